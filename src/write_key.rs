//! The key `--check-writes` sets: one per sidecar by default (its host name), and what a
//! cluster needs of it (no hash tag of its own: each primary gets one that lands in its slots).

/// A key's hash tag as Redis Cluster reads it: between the first `{` and the first `}` after
/// it, when not empty.
pub fn hash_tag(key: &str) -> Option<&str> {
    let (_, rest) = key.split_once('{')?;
    let (tag, _) = rest.split_once('}')?;
    (!tag.is_empty()).then_some(tag)
}

/// `redis-healthd:<hostname>`: one key per sidecar (the pod name in Kubernetes).
pub fn default_write_key() -> String {
    let mut name = [0u8; 256];
    // SAFETY: the buffer is valid for its length; gethostname writes at most that much.
    let ok = unsafe { libc::gethostname(name.as_mut_ptr().cast(), name.len()) } == 0;
    let len = name.iter().position(|b| *b == 0).unwrap_or(name.len());
    let host = if ok {
        String::from_utf8_lossy(&name[..len]).into_owned()
    } else {
        String::new()
    };
    format!(
        "redis-healthd:{}",
        if host.is_empty() { "localhost" } else { &host }
    )
}
