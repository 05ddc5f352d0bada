//! Benchmarks: criterion benches of the storage engine (`cargo bench -p nsq-benches`). The
//! `nsq_bench` load generator (writer/reader over the TCP protocol) arrives with nsqd.
