//! The Python interpreter with pynsq that `tests/run.sh` sets up, and the scripts in `tests/py`.

use std::path::PathBuf;

/// The workspace root.
pub fn workspace_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ has a parent")
        .to_path_buf()
}

/// `NSQ_TEST_PYTHON`, else `target/pyenv/bin/python`; panics with how to get one when missing,
/// so pynsq tests never pass silently.
pub fn python() -> PathBuf {
    let path = match std::env::var_os("NSQ_TEST_PYTHON") {
        Some(p) => PathBuf::from(p),
        None => workspace_root().join("target/pyenv/bin/python"),
    };
    assert!(
        path.exists(),
        "no Python with pynsq at {}: run `bash tests/run.sh` (it creates target/pyenv with \
         pynsq) or set NSQ_TEST_PYTHON to a python that has pynsq==0.9.1 installed",
        path.display()
    );
    path
}

/// The path of `tests/py/<name>`.
pub fn script(name: &str) -> PathBuf {
    workspace_root().join("tests/py").join(name)
}
