//! Topic and channel names: NSQ's rules (from `nsq-protocol`), and how the engine keeps them
//! safe as directory names.

pub use nsq_protocol::name::{is_ephemeral, is_valid, EPHEMERAL_SUFFIX};

/// The directory name for a topic. Names made only of dots (`.`, `..`) are valid in NSQ but
/// special in a file system, so they get a `%` prefix, which no valid name contains.
pub fn dir_name(name: &str) -> String {
    if name.bytes().all(|c| c == b'.') {
        format!("%{name}")
    } else {
        name.to_string()
    }
}

/// The topic name a directory holds, if the directory name is one [`dir_name`] makes.
pub fn from_dir_name(dir: &str) -> Option<String> {
    let name = dir.strip_prefix('%').unwrap_or(dir);
    (is_valid(name) && dir_name(name) == dir).then(|| name.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dot_names_get_a_prefix() {
        assert_eq!(dir_name(".."), "%..");
        assert_eq!(from_dir_name("%.."), Some("..".to_string()));
        assert_eq!(from_dir_name("..a"), Some("..a".to_string()));
        assert_eq!(from_dir_name("%a"), None);
        assert_eq!(from_dir_name(".."), None);
        assert_eq!(dir_name("events"), "events");
    }
}
