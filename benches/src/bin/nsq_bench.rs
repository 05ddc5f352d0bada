//! `nsq_bench`: a load generator for nsqd (ours or NSQ's). See [`nsq_benches::load`].

use clap::Parser;
use nsq_benches::load::{run, Config, Mode};
use std::process::ExitCode;
use std::time::Duration;

/// Publishes and consumes against a running nsqd and reports throughput and ack latency.
#[derive(Debug, Parser)]
#[command(name = "nsq_bench", version = nsq_server::version::VERSION_TEXT)]
struct Cli {
    /// nsqd TCP address.
    #[arg(long, default_value = "127.0.0.1:4150")]
    nsqd_tcp_address: String,
    /// Topic.
    #[arg(long, default_value = "sub_bench")]
    topic: String,
    /// Channel of the consumers.
    #[arg(long, default_value = "ch")]
    channel: String,
    /// writer (publish), reader (consume what is there) or both at once.
    #[arg(value_enum, default_value = "both")]
    mode: Mode,
    /// Message body size in bytes.
    #[arg(long, default_value_t = 200)]
    size: usize,
    /// Messages per MPUB (1 means PUB).
    #[arg(long, default_value_t = 200)]
    batch_size: usize,
    /// Connections per side (publishers, consumers).
    #[arg(long, default_value_t = 1)]
    concurrency: usize,
    /// RDY count of each consumer.
    #[arg(long, default_value_t = 2500)]
    max_in_flight: u32,
    /// How long to run, in seconds.
    #[arg(long, default_value_t = 10.0)]
    runfor: f64,
    /// Upgrade every connection to TLS (IDENTIFY tls_v1).
    #[arg(long)]
    tls: bool,
    /// With --tls: verify nsqd's certificate against this CA (default: accept any certificate).
    #[arg(long)]
    tls_root_ca_file: Option<std::path::PathBuf>,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let addr = match nsq_server::args::parse_socket_address(&cli.nsqd_tcp_address) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("nsq_bench: invalid --nsqd-tcp-address {e}");
            return ExitCode::from(2);
        }
    };
    if !(cli.runfor > 0.0 && cli.runfor.is_finite()) || cli.size == 0 {
        eprintln!("nsq_bench: --runfor and --size must be positive");
        return ExitCode::from(2);
    }
    let tls = if cli.tls {
        let settings = nsq_tools::client::TlsSettings {
            insecure_skip_verify: cli.tls_root_ca_file.is_none(),
            root_ca_file: cli.tls_root_ca_file.clone(),
            ..Default::default()
        };
        match settings.client_config() {
            Ok(c) => Some(c),
            Err(e) => {
                eprintln!("nsq_bench: {e}");
                return ExitCode::from(2);
            }
        }
    } else {
        None
    };
    let config = Config {
        tls,
        addr,
        topic: cli.topic,
        channel: cli.channel,
        mode: cli.mode,
        size: cli.size,
        batch: cli.batch_size.max(1),
        concurrency: cli.concurrency.max(1),
        max_in_flight: cli.max_in_flight.max(1),
        runfor: Duration::from_secs_f64(cli.runfor),
    };
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("nsq_bench: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(config)) {
        Ok(report) => {
            println!("{report}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("nsq_bench: {e}");
            ExitCode::FAILURE
        }
    }
}
