//! Topic and channel names: NSQ's rules, shared by the server and the client.

/// The suffix that makes a topic or channel ephemeral (kept in memory only).
pub const EPHEMERAL_SUFFIX: &str = "#ephemeral";

/// Whether `name` is a valid NSQ topic or channel name: 1 to 64 characters of
/// `[.a-zA-Z0-9_-]`, optionally ending in `#ephemeral` (counted in the 64).
pub fn is_valid(name: &str) -> bool {
    if name.is_empty() || name.len() > 64 {
        return false;
    }
    let base = name.strip_suffix(EPHEMERAL_SUFFIX).unwrap_or(name);
    !base.is_empty()
        && base
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || c == b'.' || c == b'_' || c == b'-')
}

/// Whether `name` names an ephemeral topic or channel.
pub fn is_ephemeral(name: &str) -> bool {
    name.ends_with(EPHEMERAL_SUFFIX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn follows_nsq_rules() {
        assert!(is_valid("events"));
        assert!(is_valid("a.b_c-D9"));
        assert!(is_valid("x#ephemeral"));
        assert!(is_valid(&"a".repeat(64)));
        assert!(!is_valid(&"a".repeat(65)));
        assert!(!is_valid(""));
        assert!(!is_valid("#ephemeral"));
        assert!(!is_valid("../etc"));
        assert!(!is_valid("a/b"));
        assert!(!is_valid("a b"));
        assert!(!is_valid("a#ephemeral#ephemeral"));
        assert!(is_ephemeral("x#ephemeral"));
        assert!(!is_ephemeral("x"));
    }
}
