//! The management token: what `nomaly serve`'s management API (`/@connections/*`) and
//! `/metrics` take as `Authorization: Bearer <token>`. They act on every tenant's
//! connections and count every tenant's requests, so no tenant's key opens them, and
//! neither does being on the same machine.
//!
//! The token is `NOMALY_MANAGEMENT_TOKEN` when that is set; else the one in
//! `<data-dir>/management-token`, made at the first start (32 random bytes in hex,
//! readable by its owner only) and kept across restarts.

use anyhow::{Context, Result};
use std::io::Write;
use std::path::{Path, PathBuf};

/// The variable that sets the token.
pub const VARIABLE: &str = "NOMALY_MANAGEMENT_TOKEN";

/// Where the token is kept when the variable does not set it.
pub fn file(data_dir: &Path) -> PathBuf {
    data_dir.join("management-token")
}

/// The token: from `from_env` (the variable's value) when it is not blank, else from
/// the data folder's file, which is made if missing.
pub fn load(data_dir: &Path, from_env: Option<String>) -> Result<String> {
    if let Some(token) = from_env.map(|t| t.trim().to_string()) {
        if !token.is_empty() {
            return Ok(token);
        }
    }
    let path = file(data_dir);
    match std::fs::read_to_string(&path) {
        Ok(token) if !token.trim().is_empty() => return Ok(token.trim().to_string()),
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
    }
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).map_err(|e| anyhow::anyhow!("drawing a management token: {e}"))?;
    let token = hex::encode(bytes);
    std::fs::create_dir_all(data_dir)
        .with_context(|| format!("making the data folder {}", data_dir.display()))?;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut out = options
        .open(&path)
        .with_context(|| format!("writing {}", path.display()))?;
    // A file that existed (empty) keeps its mode through `open`: set it.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        out.set_permissions(std::fs::Permissions::from_mode(0o600))
            .with_context(|| format!("protecting {}", path.display()))?;
    }
    writeln!(out, "{token}").with_context(|| format!("writing {}", path.display()))?;
    out.sync_all()
        .with_context(|| format!("writing {}", path.display()))?;
    Ok(token)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!(
            "nomaly-token-{name}-{}",
            nomaly_core::ids::Ulid::new().encode()
        ));
        std::fs::create_dir_all(&dir).expect("scratch folder");
        dir
    }

    #[test]
    fn a_random_token_is_made_once_readable_by_its_owner_only() {
        let dir = scratch("made");
        let token = load(&dir, None).expect("a token");
        assert_eq!(token.len(), 64);
        assert!(token.bytes().all(|b| b.is_ascii_hexdigit()));
        let written = std::fs::read_to_string(file(&dir)).expect("the file");
        assert_eq!(written.trim(), token);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(file(&dir))
                .expect("meta")
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600, "mode {mode:o}");
        }
        assert_eq!(
            load(&dir, None).expect("again"),
            token,
            "kept across restarts"
        );
        assert_eq!(load(&dir, Some("  ".into())).expect("blank"), token);
        let other = load(&scratch("other"), None).expect("another folder");
        assert_ne!(other, token, "drawn at random");
        std::fs::remove_dir_all(&dir).ok();
    }

    #[test]
    fn the_variable_wins_over_the_file() {
        let dir = scratch("env");
        assert_eq!(
            load(&dir, Some("set-by-env".into())).expect("token"),
            "set-by-env"
        );
        assert!(
            !file(&dir).exists(),
            "no file is written when the variable sets it"
        );
        std::fs::remove_dir_all(&dir).ok();
    }
}
