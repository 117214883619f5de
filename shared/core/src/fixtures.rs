//! The stored fixtures under `shared/core/fixtures/` (see its README), for tests.

/// Every file of `fixtures/<folder>`, as (path, text), in path order.
pub(crate) fn stored(folder: &str) -> Vec<(String, String)> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures")
        .join(folder);
    let mut all: Vec<(String, String)> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| {
            let path = e.expect("an entry").path();
            let text = std::fs::read_to_string(&path).expect("a fixture");
            (path.display().to_string(), text)
        })
        .collect();
    all.sort();
    all
}
