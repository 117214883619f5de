"""Writes the sample events in this folder: one per function and per HTTP route, shaped
as AWS sends them (API Gateway v2 HTTP payload 2.0, WebSocket, SQS, S3, DynamoDB stream,
EventBridge schedule). They name fixed ids (tenant `acme`, the key below, tasks, models,
datasets) that tests/lambda_emulator.rs stores in moto before invoking the functions with
`cargo lambda invoke --data-file`. Run `python3 events/make_events.py` after changing it;
the JSON files are committed.

The API key in these events opens nothing anywhere but a test's own moto server.
"""

import json
import pathlib

HERE = pathlib.Path(__file__).resolve().parent
TENANT = "acme"
KEY = "nmk_key_01JDKX0000000000000000KEY1_" + "0123456789abcdef" * 4
TASK_TRAIN = "tsk_01JDKX000000000000000TASK1"
TASK_DETECT = "tsk_01JDKX000000000000000TASK2"
TASK_QUEUED = "tsk_01JDKX000000000000000TASK3"
TASK_STALE = "tsk_01JDKX000000000000000TASK4"
MODEL = "mdl_01JDKX00000000000000000MD1"
DATASET_UPLOAD = "dst_01JDKX0000000000000000DST1"
DATASET_PROFILED = "dst_01JDKX0000000000000000DST2"
DATASET_DELETE = "dst_01JDKX0000000000000000DST3"
EVENT_PROFILED = "evt_01JDKX0000000000000000EVT1"
STREAM = "stm_01JDKX0000000000000000STM1"
TASK_BATCH = "tsk_01JDKX000000000000000TASK5"
TASK_PLAN = "tsk_01JDKX000000000000000TASK6"
ALERT_RULE = "alr_01JDKX0000000000000000AR01"
ALERT_DELIVERY = "alt_01JDKX0000000000000000AT01"
# The object a batch reads (stored in moto by the test from events/batch-sample.csv).
BATCH_KEY = f"tenants/acme/data/batch-sample.csv"
UPLOAD_SIZE = 4242
REGION = "us-east-1"
ACCOUNT = "123456789012"
EPOCH_MS = 1795770000000

TRAIN_ROWS = [[round(0.1 * (i % 10), 3), round(0.2 * (i % 7), 3)] for i in range(60)] + [[9.0, -9.0]]


def http(name, method, path, body=None, query="", content_type="application/json", key=KEY, extra_headers=None):
    headers = {
        "accept": "application/json",
        "host": "abc123.execute-api.us-east-1.amazonaws.com",
        "user-agent": "curl/8.5.0",
        "x-amzn-trace-id": "Root=1-6746f0a0-0123456789abcdef01234567",
        "x-forwarded-for": "203.0.113.7",
        "x-forwarded-port": "443",
        "x-forwarded-proto": "https",
    }
    if key:
        headers["authorization"] = f"Bearer {key}"
    if body is not None:
        headers["content-type"] = content_type
        headers["content-length"] = str(len(body))
    headers.update(extra_headers or {})
    event = {
        "version": "2.0",
        "routeKey": "ANY /{proxy+}" if path != "/healthz" else "ANY /{proxy+}",
        "rawPath": path,
        "rawQueryString": query,
        "headers": headers,
        "requestContext": {
            "accountId": ACCOUNT,
            "apiId": "abc123",
            "domainName": "abc123.execute-api.us-east-1.amazonaws.com",
            "domainPrefix": "abc123",
            "http": {"method": method, "path": path, "protocol": "HTTP/1.1", "sourceIp": "203.0.113.7", "userAgent": "curl/8.5.0"},
            "requestId": f"req-{name}",
            "routeKey": "ANY /{proxy+}",
            "stage": "$default",
            "time": "27/Nov/2026:05:00:00 +0000",
            "timeEpoch": EPOCH_MS,
        },
        "pathParameters": {"proxy": path.lstrip("/")},
        "isBase64Encoded": False,
    }
    if query:
        event["queryStringParameters"] = dict(p.split("=", 1) for p in query.split("&"))
    if body is not None:
        event["body"] = body
    return event


def ws(name, route, connection, body=None, query=None):
    event = {
        "requestContext": {
            "routeKey": route,
            "eventType": {"$connect": "CONNECT", "$disconnect": "DISCONNECT"}.get(route, "MESSAGE"),
            "extendedRequestId": f"ext-{name}",
            "requestTime": "27/Nov/2026:05:00:00 +0000",
            "messageDirection": "IN",
            "stage": "live",
            "connectedAt": EPOCH_MS,
            "requestTimeEpoch": EPOCH_MS,
            "identity": {"sourceIp": "203.0.113.7", "userAgent": "websocat/1.13"},
            "requestId": f"req-{name}",
            "domainName": "ws123.execute-api.us-east-1.amazonaws.com",
            "connectionId": connection,
            "apiId": "ws123",
        },
        "isBase64Encoded": False,
    }
    if route == "$default":
        event["requestContext"]["messageId"] = f"msg-{name}"
    if route == "$disconnect":
        event["requestContext"]["disconnectStatusCode"] = 1000
        event["requestContext"]["disconnectReason"] = "Client-side close frame status not set"
    if query is not None:
        event["queryStringParameters"] = query
        event["multiValueQueryStringParameters"] = {k: [v] for k, v in query.items()}
        event["headers"] = {"Host": "ws123.execute-api.us-east-1.amazonaws.com", "Sec-WebSocket-Version": "13"}
    if body is not None:
        event["body"] = body
    return event


def sqs_record(message_id, job, receive_count="1"):
    return {
        "messageId": message_id,
        "receiptHandle": f"AQEB{message_id}==",
        "body": json.dumps(job),
        "attributes": {
            "ApproximateReceiveCount": receive_count,
            "SentTimestamp": str(EPOCH_MS),
            "SenderId": "AROAEXAMPLE:api",
            "ApproximateFirstReceiveTimestamp": str(EPOCH_MS + 5),
        },
        "messageAttributes": {},
        "md5OfBody": "0" * 32,
        "eventSource": "aws:sqs",
        "eventSourceARN": f"arn:aws:sqs:{REGION}:{ACCOUNT}:nomaly-jobs",
        "awsRegion": REGION,
    }


def main():
    events = {}
    # ---- api: one event per route
    events["api-healthz"] = http("healthz", "GET", "/healthz", key=None)
    events["api-detect"] = http("detect", "POST", "/v1/detect", json.dumps({"algorithm": "zscore", "rows": TRAIN_ROWS, "contamination": 0.02, "explain": True}))
    events["api-detect-csv"] = http("detect-csv", "POST", "/v1/detect", "a,b,label\n1,2,0\n1.1,2.1,0\n0.9,1.9,0\n1,2.05,0\n50,-40,1\n", query="algorithm=zscore&threshold=3&exclude_columns=label", content_type="text/csv")
    events["api-detect-model"] = http("detect-model", "POST", "/v1/detect", json.dumps({"model_id": MODEL, "rows": [[0.1, 0.2], [9.0, -9.0]]}))
    events["api-models-create"] = http("models-create", "POST", "/v1/models", json.dumps({"algorithm": "iforest", "params": {"n_estimators": 50}, "rows": TRAIN_ROWS, "columns": ["a", "b"]}), extra_headers={"idempotency-key": "sample-train-1"})
    events["api-models-list"] = http("models-list", "GET", "/v1/models", query="limit=10")
    events["api-models-get"] = http("models-get", "GET", f"/v1/models/{MODEL}")
    events["api-models-delete"] = http("models-delete", "DELETE", f"/v1/models/{MODEL}")
    events["api-models-report"] = http("models-report", "POST", f"/v1/models/{MODEL}/reports", json.dumps({"rows": TRAIN_ROWS, "columns": ["a", "b"]}))
    events["api-tasks-list"] = http("tasks-list", "GET", "/v1/tasks", query="limit=2")
    events["api-tasks-get"] = http("tasks-get", "GET", f"/v1/tasks/{TASK_TRAIN}")
    events["api-tasks-cancel"] = http("tasks-cancel", "POST", f"/v1/tasks/{TASK_QUEUED}/cancel")
    events["api-tasks-result"] = http("tasks-result", "GET", f"/v1/tasks/{TASK_DETECT}/result")
    events["api-datasets-create"] = http("datasets-create", "POST", "/v1/datasets", json.dumps({"name": "pumps-2026-11.csv", "size": 1048576, "train": {"algorithm": "iforest"}}))
    events["api-datasets-list"] = http("datasets-list", "GET", "/v1/datasets")
    events["api-datasets-get"] = http("datasets-get", "GET", f"/v1/datasets/{DATASET_PROFILED}")
    events["api-datasets-delete"] = http("datasets-delete", "DELETE", f"/v1/datasets/{DATASET_DELETE}")
    events["api-events-list"] = http("events-list", "GET", "/v1/events", query="limit=100")
    events["api-streams-create"] = http("streams-create", "POST", "/v1/streams", json.dumps({"name": "pump 7 pressure", "detector": "rolling_median", "params": {"window": 60}}))
    events["api-streams-points"] = http("streams-points", "POST", f"/v1/streams/{STREAM}/points", json.dumps({"points": [{"timestamp": "2026-11-27T05:00:00Z", "value": 4.1}, {"timestamp": "2026-11-27T05:01:00Z", "value": 4.0}, {"timestamp": "2026-11-27T05:02:00Z", "value": 19.5}]}))
    backtest_points = [{"timestamp": 1795770000 + 60 * i, "value": round(4.0 + 0.1 * (i % 5), 2) + (15.0 if i == 55 else 0.0)} for i in range(60)]
    events["api-backtests-create"] = http("backtests-create", "POST", "/v1/backtests", json.dumps({"detector": "rolling_median", "params": {"window": 20}, "points": backtest_points, "windows": [{"start": 1795770000 + 60 * 54, "end": 1795770000 + 60 * 57}]}))
    events["api-unauthorized"] = http("unauthorized", "GET", "/v1/tasks", key="nmk_not_a_key")

    # ---- ws
    events["ws-connect"] = ws("connect", "$connect", "Abc123conn=", query={"api_key": KEY})
    events["ws-connect-refused"] = ws("connect-refused", "$connect", "Refused1conn=", query={"api_key": "nmk_wrong"})
    events["ws-subscribe"] = ws("subscribe", "$default", "Abc123conn=", body=json.dumps({"action": "subscribe", "channel": "tenant", "after": EVENT_PROFILED}))
    events["ws-score"] = ws("score", "$default", "Abc123conn=", body=json.dumps({"action": "score", "model_id": MODEL, "rows": [[0.1, 0.2], [9.0, -9.0]], "request_id": "r-1"}))
    events["ws-score-stream"] = ws("score-stream", "$default", "Abc123conn=", body=json.dumps({"action": "score", "stream_id": STREAM, "points": [{"timestamp": "2026-11-27T05:03:00Z", "value": 4.2}], "request_id": "r-2"}))
    events["ws-disconnect"] = ws("disconnect", "$disconnect", "Abc123conn=")

    # ---- worker: one batch of two jobs (a training and a large detection)
    train_job = {
        "job_id": "job_01JDKX00000000000000000JB1",
        "tenant": TENANT,
        "kind": "train",
        "correlation_id": "req-sample-train",
        "body": {
            "task_id": TASK_TRAIN,
            "model_id": MODEL,
            "spec": {"algorithm": "iforest", "params": {"n_estimators": 50}, "seed": 0},
            "data": {"source": "inline", "columns": ["a", "b"], "rows": TRAIN_ROWS},
        },
    }
    detect_job = {
        "job_id": "job_01JDKX00000000000000000JB2",
        "tenant": TENANT,
        "kind": "detect",
        "correlation_id": "req-sample-detect",
        "body": {
            "task_id": TASK_DETECT,
            "spec": {"scorer": {"source": "fit", "algorithm": "ecod"}, "explain": False},
            "input": f"tenants/{TENANT}/inputs/{TASK_DETECT}.json",
        },
    }
    events["worker-sqs"] = {"Records": [sqs_record("1f2e3d4c-0000-4000-8000-000000000001", train_job), sqs_record("1f2e3d4c-0000-4000-8000-000000000002", detect_job)]}
    events["worker-sqs-poison"] = {"Records": [sqs_record("1f2e3d4c-0000-4000-8000-000000000003", train_job, "2"), {**sqs_record("1f2e3d4c-0000-4000-8000-000000000004", train_job), "body": "{\"not\": \"a job\"}"}]}

    # ---- batch: the route, the planner (worker) and two chunks (chunks)
    events["api-batch-create"] = http("batch-create", "POST", "/v1/batch", json.dumps({"source": {"key": BATCH_KEY}, "model_id": MODEL, "output": "sample"}))
    batch = (HERE / "batch-sample.csv").read_bytes()
    header_end = batch.index(b"\n") + 1
    middle = batch.index(b"\n", header_end + (len(batch) - header_end) // 2) + 1
    header = batch[:header_end].decode().strip()
    source = {"blob": BATCH_KEY}
    plan_job = {
        "job_id": "job_01JDKX00000000000000000JB5",
        "tenant": TENANT,
        "kind": "batch",
        "correlation_id": "req-sample-batch",
        "body": {"task_id": TASK_PLAN, "source": source, "model_id": MODEL, "output": "planned", "chunk_bytes": 200},
    }
    events["worker-sqs-batch"] = {"Records": [sqs_record("1f2e3d4c-0000-4000-8000-000000000005", plan_job)]}
    chunk_records = []
    for index, (start, end) in enumerate([(header_end, middle), (middle, len(batch))]):
        job = {
            "job_id": f"job_01JDKX000000000000000000C{index}",
            "tenant": TENANT,
            "kind": "chunk",
            "correlation_id": "req-sample-batch",
            "body": {"task_id": TASK_BATCH, "index": index, "start": start, "end": end, "header": header, "source": source, "model_id": MODEL, "output": "sample"},
        }
        record = sqs_record(f"1f2e3d4c-0000-4000-8000-00000000001{index}", job)
        record["eventSourceARN"] = f"arn:aws:sqs:{REGION}:{ACCOUNT}:nomaly-chunks"
        chunk_records.append(record)
    events["chunks-sqs"] = {"Records": chunk_records}

    # ---- notify: the first attempt of one alert delivery
    alert_job = {
        "job_id": "job_01JDKX000000000000000000A1",
        "tenant": TENANT,
        "kind": "alert",
        "correlation_id": ALERT_DELIVERY,
        "body": {"rule_id": ALERT_RULE, "delivery_id": ALERT_DELIVERY, "attempt": 1},
    }
    record = sqs_record("1f2e3d4c-0000-4000-8000-000000000020", alert_job)
    record["eventSourceARN"] = f"arn:aws:sqs:{REGION}:{ACCOUNT}:nomaly-alerts"
    events["notify-sqs"] = {"Records": [record]}

    # ---- ingest
    key = f"tenants/{TENANT}/uploads/{DATASET_UPLOAD}.upload"
    events["ingest-s3"] = {
        "Records": [
            {
                "eventVersion": "2.1",
                "eventSource": "aws:s3",
                "awsRegion": REGION,
                "eventTime": "2026-11-27T05:00:00.000Z",
                "eventName": "ObjectCreated:Put",
                "userIdentity": {"principalId": "AWS:AROAEXAMPLE:uploader"},
                "requestParameters": {"sourceIPAddress": "203.0.113.7"},
                "responseElements": {"x-amz-request-id": "C3D13FE58DE4C810", "x-amz-id-2": "FMyUVURIY8/IgAtTv8xRjskZQpcIZ9KG4V5Wp6S7S/JRWeUWerMUE5JgHvANOjpD"},
                "s3": {
                    "s3SchemaVersion": "1.0",
                    "configurationId": "nomaly-uploads",
                    "bucket": {"name": "nomaly-123456789012-us-east-1", "ownerIdentity": {"principalId": "A3NL1KOZZKExample"}, "arn": "arn:aws:s3:::nomaly-123456789012-us-east-1"},
                    "object": {"key": key, "size": UPLOAD_SIZE, "eTag": "d41d8cd98f00b204e9800998ecf8427e", "sequencer": "0055AED6DCD90281E5"},
                },
            }
        ]
    }

    # ---- events: one INSERT of a dataset.profiled event that asks for training
    profiled = {
        "event_id": EVENT_PROFILED,
        "tenant": TENANT,
        "type": "dataset.profiled",
        "at": EPOCH_MS,
        "correlation_id": f"ingest-{DATASET_PROFILED}",
        "payload": {"dataset_id": DATASET_PROFILED, "status": "profiled", "rows": 61, "columns": 2, "train": True},
    }
    events["events-stream"] = {
        "Records": [
            {
                "eventID": "c81e728d9d4c2f636f067f89cc14862c",
                "eventName": "INSERT",
                "eventVersion": "1.1",
                "eventSource": "aws:dynamodb",
                "awsRegion": REGION,
                "dynamodb": {
                    "ApproximateCreationDateTime": EPOCH_MS // 1000,
                    "Keys": {"pk": {"S": TENANT}, "sk": {"S": EVENT_PROFILED}},
                    "NewImage": {"pk": {"S": TENANT}, "sk": {"S": EVENT_PROFILED}, "body": {"S": json.dumps(profiled)}},
                    "SequenceNumber": "111100000000000000000001",
                    "SizeBytes": 412,
                    "StreamViewType": "NEW_IMAGE",
                },
                "eventSourceARN": f"arn:aws:dynamodb:{REGION}:{ACCOUNT}:table/nomaly-events/stream/2026-11-27T00:00:00.000",
            }
        ]
    }

    # ---- scheduler
    events["scheduler-tick"] = {
        "version": "0",
        "id": "53dc4d37-cffa-4f76-80c9-8b7d4a4d2eaa",
        "detail-type": "Scheduled Event",
        "source": "aws.events",
        "account": ACCOUNT,
        "time": "2026-11-27T05:00:00Z",
        "region": REGION,
        "resources": [f"arn:aws:events:{REGION}:{ACCOUNT}:rule/nomaly-SchedulerFunctionTick"],
        "detail": {},
    }

    for name, event in events.items():
        (HERE / f"{name}.json").write_text(json.dumps(event, indent=2) + "\n")
    print(f"wrote {len(events)} events")


if __name__ == "__main__":
    main()
