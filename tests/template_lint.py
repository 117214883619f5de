"""Expands template.yaml's SAM transform with aws-sam-translator, then lints the result
with cfn-lint. Prints every finding; exits 1 if there is any error or warning.

With `--describe`, prints instead what the tests cross-check against the workspace as
JSON: each function's binary, environment (globals merged), timeout, the queue's
visibility timeout and redrive count, the parameters and conditions, the stages' throttles,
the api function's reserved concurrency, and the worker's SQS triggers and policies.

The translator needs AWS's managed-policy names; it is given the copy that ships inside
aws-sam-translator instead of asking IAM, so no AWS account or network is needed.
"""

import json
import os
import pathlib
import sys

import cfnlint.api
import samtranslator
from cfnlint.decode import decode_str
from samtranslator.translator.transform import transform

ROOT = pathlib.Path(__file__).resolve().parent.parent


class BundledPolicies:
    """The managed-policy map aws-sam-translator ships with."""

    def load(self):
        data = pathlib.Path(samtranslator.__file__).parent / "internal/data/aws_managed_policies.json"
        return json.loads(data.read_text())["aws"]


def describe(template) -> dict:
    globals_fn = template.get("Globals", {}).get("Function", {})
    global_env = globals_fn.get("Environment", {}).get("Variables", {})
    functions = {}
    for name, r in template["Resources"].items():
        if r["Type"] != "AWS::Serverless::Function":
            continue
        props = r.get("Properties", {})
        env = dict(global_env)
        env.update(props.get("Environment", {}).get("Variables", {}))
        functions[name] = {
            "binary": r.get("Metadata", {}).get("BuildProperties", {}).get("Binary"),
            "build_method": r.get("Metadata", {}).get("BuildMethod"),
            "runtime": props.get("Runtime", globals_fn.get("Runtime")),
            "architectures": props.get("Architectures", globals_fn.get("Architectures")),
            "timeout": props.get("Timeout", globals_fn.get("Timeout")),
            "tracing": props.get("Tracing", globals_fn.get("Tracing")),
            "env": sorted(env),
            "env_values": {k: v for k, v in env.items() if isinstance(v, str)},
            "events": sorted(e["Type"] for e in props.get("Events", {}).values()),
        }
    queue = template["Resources"]["JobsQueue"]["Properties"]
    chunks = template["Resources"]["ChunksQueue"]["Properties"]
    alerts = template["Resources"]["AlertsQueue"]["Properties"]
    resources = template["Resources"]
    worker_events = resources["WorkerFunction"]["Properties"].get("Events", {})
    return {
        "functions": functions,
        "parameters": template.get("Parameters", {}),
        "conditions": template.get("Conditions", {}),
        "http_route_settings": resources["HttpApi"]["Properties"].get("DefaultRouteSettings", {}),
        "ws_route_settings": resources["WsStage"]["Properties"].get("DefaultRouteSettings", {}),
        "api_reserved_concurrency": resources["ApiFunction"]["Properties"].get("ReservedConcurrentExecutions"),
        "worker_sqs_events": [e.get("Properties", {}) for e in worker_events.values() if e.get("Type") == "SQS"],
        "worker_policies": resources["WorkerFunction"]["Properties"].get("Policies", []),
        "queue_visibility_timeout": queue["VisibilityTimeout"],
        "queue_max_receives": queue["RedrivePolicy"]["maxReceiveCount"],
        "chunks_visibility_timeout": chunks["VisibilityTimeout"],
        "chunks_max_receives": chunks["RedrivePolicy"]["maxReceiveCount"],
        "alerts_visibility_timeout": alerts["VisibilityTimeout"],
        "alerts_max_receives": alerts["RedrivePolicy"]["maxReceiveCount"],
    }


def main() -> int:
    # The translator names the region in ARNs it writes; any region will do for a lint.
    os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
    os.environ.setdefault("AWS_REGION", "us-east-1")
    text = (ROOT / "template.yaml").read_text()
    template, matches = decode_str(text)
    if matches:
        for m in matches:
            print(f"template.yaml: {m}")
        return 1
    if "--describe" in sys.argv:
        print(json.dumps(describe(template), default=str))
        return 0
    # As `sam package` would: local code folders become S3 locations.
    template.get("Globals", {}).get("Function", {}).pop("CodeUri", None)
    for name, resource in template["Resources"].items():
        if resource["Type"] == "AWS::Serverless::Function":
            resource.setdefault("Properties", {})["CodeUri"] = f"s3://placeholder-bucket/{name}.zip"
    try:
        expanded = transform(template, {"AWS::Region": "us-east-1"}, BundledPolicies())
    except Exception as e:  # the translator's own findings
        for cause in getattr(e, "causes", [e]):
            print(f"aws-sam-translator: {cause}")
        return 1
    resources = expanded["Resources"]
    kinds = {}
    for r in resources.values():
        kinds[r["Type"]] = kinds.get(r["Type"], 0) + 1
    print(f"expanded with aws-sam-translator {samtranslator.__version__}: {len(resources)} resources")
    for kind in sorted(kinds):
        print(f"  {kinds[kind]:3d} {kind}")
    findings = cfnlint.api.lint(json.dumps(expanded), config=cfnlint.api.ManualArgs(regions=["us-east-1"]))
    bad = 0
    for f in findings:
        level = f.rule.severity.lower()
        print(f"cfn-lint {level} {f.rule.id}: {f.message} ({'/'.join(map(str, f.path))})")
        if level in ("error", "warning"):
            bad += 1
    print(f"cfn-lint: {len(findings)} findings, {bad} errors or warnings")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
