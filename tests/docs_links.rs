//! Every relative link in the repository's Markdown files leads somewhere: for each
//! `[text](target)` (and `[label]: target` definition) outside code, the target file or
//! folder exists relative to the Markdown file, and a `#fragment` names a heading of the
//! target Markdown file (or of the same file, for `#fragment` alone) by its GitHub slug.
//! Links to `http:`, `https:` and `mailto:` are not followed.

use nomaly_tests::repo_root;
use std::collections::HashSet;
use std::path::{Path, PathBuf};

/// Folders that hold no Markdown of the repository's own.
const SKIPPED_DIRS: &[&str] = &[".git", ".venv", "target", "node_modules", ".nomaly"];

/// A link as written: the line it starts on and its destination.
#[derive(Debug, PartialEq)]
struct Link {
    line: usize,
    target: String,
}

/// Every `*.md` file under `dir`, outside [`SKIPPED_DIRS`], sorted.
fn markdown_files(dir: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(dir) = pending.pop() {
        let entries = std::fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("cannot list {}: {e}", dir.display()));
        for entry in entries {
            let entry = entry.expect("a directory entry");
            let path = entry.path();
            let name = entry.file_name();
            let file_type = entry.file_type().expect("a file type");
            if file_type.is_dir() {
                if !SKIPPED_DIRS.iter().any(|s| name == *s) {
                    pending.push(path);
                }
            } else if path.extension().is_some_and(|e| e == "md") {
                found.push(path);
            }
        }
    }
    found.sort();
    found
}

/// The text with fenced code blocks, inline code spans and HTML comments replaced by
/// spaces (newlines kept, so offsets still give line numbers).
fn without_code(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    // The fence that opened the current code block: its character and length.
    let mut fence: Option<(char, usize)> = None;
    for line in text.split_inclusive('\n') {
        let trimmed = line.trim_start();
        let marker = trimmed.chars().next().filter(|c| *c == '`' || *c == '~');
        let run = marker.map_or(0, |c| trimmed.chars().take_while(|x| *x == c).count());
        match (fence, marker) {
            (None, Some(c)) if run >= 3 => {
                fence = Some((c, run));
                out.push_str(&blank(line));
            }
            (Some((c, n)), Some(m)) if m == c && run >= n && trimmed[run..].trim().is_empty() => {
                fence = None;
                out.push_str(&blank(line));
            }
            (Some(_), _) => out.push_str(&blank(line)),
            (None, _) => out.push_str(line),
        }
    }
    blank_spans(&blank_comments(&out))
}

/// Spaces for every character of `s` but its newlines.
fn blank(s: &str) -> String {
    s.chars()
        .map(|c| if c == '\n' { '\n' } else { ' ' })
        .collect()
}

/// HTML comments (`<!-- ... -->`) blanked.
fn blank_comments(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find("<!--") {
        let Some(len) = rest[start..].find("-->").map(|e| e + 3) else {
            break;
        };
        out.push_str(&rest[..start]);
        out.push_str(&blank(&rest[start..start + len]));
        rest = &rest[start + len..];
    }
    out.push_str(rest);
    out
}

/// Inline code spans blanked: a run of backticks up to the next run of the same length,
/// within one paragraph. A run with no partner is kept as text.
fn blank_spans(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    let mut copied = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\' {
            i += 2;
            continue;
        }
        if bytes[i] != b'`' {
            i += 1;
            continue;
        }
        let run = bytes[i..].iter().take_while(|b| **b == b'`').count();
        let open_end = i + run;
        let mut j = open_end;
        let mut close = None;
        while j < bytes.len() {
            if bytes[j] == b'`' {
                let n = bytes[j..].iter().take_while(|b| **b == b'`').count();
                if n == run {
                    close = Some(j + n);
                    break;
                }
                j += n;
            } else if bytes[j..].starts_with(b"\n\n") {
                break;
            } else {
                j += 1;
            }
        }
        match close {
            Some(end) => {
                out.push_str(&text[copied..i]);
                out.push_str(&blank(&text[i..end]));
                copied = end;
                i = end;
            }
            None => i = open_end,
        }
    }
    out.push_str(&text[copied..]);
    out
}

/// The links of a Markdown document: inline links and images `[text](target "title")`,
/// and reference definitions `[label]: target`, outside code.
fn links(markdown: &str) -> Vec<Link> {
    let text = without_code(markdown);
    let bytes = text.as_bytes();
    let line_of = |offset: usize| text[..offset].matches('\n').count() + 1;
    let mut found = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\' {
            i += 2;
            continue;
        }
        if bytes[i] != b'[' {
            i += 1;
            continue;
        }
        // The matching `]`, brackets nesting.
        let mut depth = 0;
        let mut close = None;
        let mut j = i;
        while j < bytes.len() {
            match bytes[j] {
                b'\\' => j += 1,
                b'[' => depth += 1,
                b']' => {
                    depth -= 1;
                    if depth == 0 {
                        close = Some(j);
                        break;
                    }
                }
                _ => {}
            }
            j += 1;
        }
        let Some(close) = close else {
            i += 1;
            continue;
        };
        let after = &text[close + 1..];
        let at_line_start = text[..i]
            .rsplit('\n')
            .next()
            .is_some_and(|before| before.len() <= 3 && before.chars().all(|c| c == ' '));
        if let Some(rest) = after.strip_prefix('(') {
            // The destination runs to the matching `)`, parentheses nesting, within
            // the paragraph.
            let mut depth = 1;
            let end = rest
                .char_indices()
                .take_while(|(k, _)| !rest[*k..].starts_with("\n\n"))
                .find(|(_, c)| {
                    match c {
                        '(' => depth += 1,
                        ')' => depth -= 1,
                        _ => {}
                    }
                    depth == 0
                })
                .map(|(k, _)| k);
            if let Some(end) = end {
                if let Some(target) = destination(&rest[..end]) {
                    found.push(Link {
                        line: line_of(i),
                        target,
                    });
                }
                // Links inside the text of this one (an image in a link) come next.
                i += 1;
                continue;
            }
        } else if let Some(rest) = after.strip_prefix(':').filter(|_| at_line_start) {
            let definition = rest.lines().next().unwrap_or("");
            if let Some(target) = destination(definition) {
                found.push(Link {
                    line: line_of(i),
                    target,
                });
            }
        }
        i += 1;
    }
    found
}

/// A link's destination without its title and angle brackets; `None` when empty.
fn destination(inside: &str) -> Option<String> {
    let inside = inside.trim();
    let target = if let Some(rest) = inside.strip_prefix('<') {
        rest.split_once('>').map_or(rest, |(t, _)| t)
    } else {
        inside.split_whitespace().next().unwrap_or("")
    };
    (!target.is_empty()).then(|| target.to_string())
}

/// `%XX` escapes decoded (a link to `my%20file.md` names `my file.md`).
fn percent_decoded(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (bytes[i], hex) {
            (b'%', Some(b)) => {
                out.push(b);
                i += 3;
            }
            (b, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// GitHub's anchor for a heading: its text as rendered (inline code, emphasis and links
/// reduced to their text), lowercased, punctuation but `-` and `_` removed, each space a
/// `-`.
fn slug(heading: &str) -> String {
    let mut text = String::new();
    let mut rest = heading;
    // `[text](target)` reads as `text`.
    while let Some(open) = rest.find('[') {
        let Some(mid) = rest[open..].find("](").map(|m| open + m) else {
            break;
        };
        let Some(end) = rest[mid..].find(')').map(|e| mid + e) else {
            break;
        };
        text.push_str(&rest[..open]);
        text.push_str(&rest[open + 1..mid]);
        rest = &rest[end + 1..];
    }
    text.push_str(rest);
    text.trim()
        .to_lowercase()
        .chars()
        .filter_map(|c| match c {
            ' ' => Some('-'),
            '-' | '_' => Some(c),
            c if c.is_alphanumeric() => Some(c),
            _ => None,
        })
        .collect()
}

/// The anchors of a Markdown document's headings (ATX `#` and setext), with GitHub's
/// `-1`, `-2` suffixes for repeated ones. Headings inside code blocks do not count.
fn anchors(markdown: &str) -> HashSet<String> {
    let text = without_code(markdown);
    let original: Vec<&str> = markdown.lines().collect();
    let mut headings = Vec::new();
    let mut previous: Option<usize> = None;
    for (n, line) in text.lines().enumerate() {
        let indent = line.len() - line.trim_start_matches(' ').len();
        let trimmed = line.trim();
        let hashes = trimmed.chars().take_while(|c| *c == '#').count();
        let is_atx = indent <= 3
            && (1..=6).contains(&hashes)
            && trimmed[hashes..].chars().next().is_none_or(|c| c == ' ');
        let is_underline = indent <= 3
            && !trimmed.is_empty()
            && (trimmed.chars().all(|c| c == '=') || trimmed.chars().all(|c| c == '-'));
        if is_atx {
            // The heading's own text, code spans included; closing `#`s dropped.
            let body = original[n].trim()[hashes..].trim();
            let unclosed = body.trim_end_matches('#');
            let body = if unclosed.is_empty() || unclosed.ends_with(' ') {
                unclosed.trim_end()
            } else {
                body
            };
            headings.push(body.to_string());
            previous = None;
        } else if is_underline && previous.is_some() {
            let p = previous.take().expect("a paragraph line");
            headings.push(original[p].trim().to_string());
        } else if trimmed.is_empty()
            || trimmed.starts_with('|')
            || trimmed.starts_with('-')
            || trimmed.starts_with('*')
            || trimmed.starts_with('>')
        {
            previous = None;
        } else if indent <= 3 {
            previous = Some(n);
        }
    }
    let mut seen = HashSet::new();
    for heading in headings {
        let base = slug(&heading);
        let mut anchor = base.clone();
        let mut k = 0;
        while seen.contains(&anchor) {
            k += 1;
            anchor = format!("{base}-{k}");
        }
        seen.insert(anchor);
    }
    seen
}

/// What is wrong with `link` in `file`, if anything.
fn problem(root: &Path, file: &Path, target: &str) -> Option<String> {
    let lower = target.to_ascii_lowercase();
    if ["http://", "https://", "mailto:"]
        .iter()
        .any(|p| lower.starts_with(p))
    {
        return None;
    }
    let (path, fragment) = match target.split_once('#') {
        Some((p, f)) => (p, Some(f)),
        None => (target, None),
    };
    let path = path.split_once('?').map_or(path, |(p, _)| p);
    let resolved = if path.is_empty() {
        file.to_path_buf()
    } else if let Some(from_root) = path.strip_prefix('/') {
        root.join(percent_decoded(from_root))
    } else {
        file.parent()
            .expect("a Markdown file's folder")
            .join(percent_decoded(path))
    };
    if !resolved.exists() {
        return Some(format!("no such file or folder: {}", resolved.display()));
    }
    let fragment = fragment.filter(|f| !f.is_empty())?;
    // A folder's anchors are its README's, as GitHub shows it.
    let markdown = if resolved.is_dir() {
        resolved.join("README.md")
    } else {
        resolved
    };
    if markdown.extension().is_none_or(|e| e != "md") || !markdown.is_file() {
        // Anchors into other files (`main.rs#L10`) are GitHub's, not headings.
        return None;
    }
    let text = std::fs::read_to_string(&markdown)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", markdown.display()));
    let fragment = percent_decoded(fragment);
    (!anchors(&text).contains(&fragment)).then(|| {
        format!(
            "no heading of {} has the anchor #{fragment}",
            markdown.strip_prefix(root).unwrap_or(&markdown).display()
        )
    })
}

/// Every broken relative link of the Markdown files under `root`, one line each.
fn broken_links(root: &Path) -> Vec<String> {
    let mut broken = Vec::new();
    for file in markdown_files(root) {
        let text = std::fs::read_to_string(&file)
            .unwrap_or_else(|e| panic!("cannot read {}: {e}", file.display()));
        let shown = file
            .strip_prefix(root)
            .unwrap_or(&file)
            .display()
            .to_string();
        for link in links(&text) {
            if let Some(why) = problem(root, &file, &link.target) {
                broken.push(format!("{shown}:{}: ({}): {why}", link.line, link.target));
            }
        }
    }
    broken
}

#[test]
fn every_relative_markdown_link_resolves() {
    let root = repo_root();
    let files = markdown_files(&root);
    assert!(
        files.iter().any(|f| f.ends_with("README.md")),
        "no Markdown found under {}",
        root.display()
    );
    let broken = broken_links(&root);
    assert!(
        broken.is_empty(),
        "{} broken link(s) in the Markdown files:\n{}",
        broken.len(),
        broken.join("\n")
    );
}

#[test]
fn slugs_are_githubs() {
    assert_eq!(slug("Two commands"), "two-commands");
    assert_eq!(slug("`nomaly serve`"), "nomaly-serve");
    assert_eq!(
        slug("Quickstart: the service on your machine"),
        "quickstart-the-service-on-your-machine"
    );
    assert_eq!(
        slug("Dashboard, reports, logs and metrics"),
        "dashboard-reports-logs-and-metrics"
    );
    assert_eq!(
        slug("Local server under load: `nomaly serve` vs FastAPI + scikit-learn"),
        "local-server-under-load-nomaly-serve-vs-fastapi--scikit-learn"
    );
    assert_eq!(
        slug("One tenant: `hostile-load`"),
        "one-tenant-hostile-load"
    );
    assert_eq!(slug("snake_case [a link](x.md)"), "snake_case-a-link");
}

#[test]
fn headings_give_anchors_outside_code_only() {
    let doc = "# Title\n\n```sh\n# not a heading\n```\n\n## Twice\n\n## Twice\n\nSetext\n------\n";
    let found = anchors(doc);
    let expected: HashSet<String> = ["title", "twice", "twice-1", "setext"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    assert_eq!(found, expected);
}

#[test]
fn links_in_code_and_comments_are_not_links() {
    let doc = "See [a](a.md) and [b](<b c.md> \"title\").\n\
               `[code](x.md)` and ``[more `code`](y.md)``.\n\
               <!-- [hidden](z.md) -->\n\
               ```\n[fenced](w.md)\n```\n\
               [label]: d.md\n\
               ![image](e.png) [text\nacross lines](f.md#frag) [not a link] (g.md)\n";
    let targets: Vec<String> = links(doc).into_iter().map(|l| l.target).collect();
    assert_eq!(
        targets,
        ["a.md", "b c.md", "d.md", "e.png", "f.md#frag"].map(String::from)
    );
    let lines: Vec<usize> = links(doc).into_iter().map(|l| l.line).collect();
    assert_eq!(lines, [1, 1, 7, 8, 8]);
}

#[test]
fn a_broken_link_is_reported_with_its_file_and_line() {
    let dir = nomaly_tests::scratch("docs-links");
    std::fs::create_dir_all(dir.join("docs")).expect("a docs folder");
    std::fs::write(
        dir.join("README.md"),
        "# Top\n\n[ok](docs/a.md#part-one) [self](#top)\n[gone](docs/b.md)\n\
         [bad anchor](docs/a.md#part-two) [bad self](#nowhere) [web](https://example.com/x)\n",
    )
    .expect("README.md written");
    std::fs::write(
        dir.join("docs").join("a.md"),
        "# A\n\n## Part one\n\n[up](../README.md#top)\n",
    )
    .expect("a.md written");
    let broken = broken_links(&dir);
    assert_eq!(broken.len(), 3, "{broken:#?}");
    assert!(broken[0].starts_with("README.md:4: (docs/b.md): no such file"));
    assert!(broken[1].starts_with("README.md:5: (docs/a.md#part-two): no heading of docs/a.md"));
    assert!(broken[2].starts_with("README.md:5: (#nowhere): no heading of README.md"));
}
