//! The process's allocator, set up once at start by every long-lived entry point (the
//! Lambda functions, `nomaly serve`).
//!
//! glibc's malloc gives threads their own arenas (up to 8 per core) and keeps what they
//! free for reuse. A batch chunk allocates tens of megabytes per slice on whichever
//! blocking or rayon thread runs it, so freed slices pile up across arenas: scoring a 5 GB
//! CSV with one chunk worker peaked at 483 MiB resident with the default arenas and 158
//! MiB with two (`bench/batch_scale.sh`), and ran faster.

/// Arenas the process's malloc may use.
pub const MALLOC_ARENAS: i32 = 2;

/// Caps glibc's malloc at [`MALLOC_ARENAS`] arenas (a no-op on other C libraries, and
/// when `MALLOC_ARENA_MAX` is set: the environment wins).
pub fn limit_malloc_arenas() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    if std::env::var_os("MALLOC_ARENA_MAX").is_none() {
        // SAFETY: mallopt only changes a malloc tunable; it is safe to call at any time.
        unsafe {
            libc::mallopt(libc::M_ARENA_MAX, MALLOC_ARENAS);
        }
    }
}
