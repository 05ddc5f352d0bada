//! End-to-end tests of the project's binaries with real NSQ clients (tokio-nsq, pynsq), crash
//! tests that `kill -9` a real nsqd, and fault tests. They need the `nsqd` binary, which
//! arrives with the server; until then the engine's own tests (in `engine/tests`) cover the
//! storage layer end to end on a simulated and a real disk.
