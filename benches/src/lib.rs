//! Benchmarks: criterion benches of the storage engine (`cargo bench -p nsq-benches`), and
//! [`load`], the `nsq_bench` load generator that drives a running nsqd over TCP.

pub mod load;
