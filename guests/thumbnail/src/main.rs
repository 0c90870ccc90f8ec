//! The thumbnail guest: request on stdin, JPEG on stdout, reasons on stderr with exit status 2.
//!
//! Built natively, `thumbnail --bench N < request` instead times N thumbnails in-process and
//! prints the median in microseconds: the native baseline of the executor benchmark.

use std::io::{self, Read, Write};
use std::time::Instant;

fn main() {
    let mut request = Vec::new();
    if let Err(e) = io::stdin().read_to_end(&mut request) {
        eprintln!("cannot read stdin: {e}");
        std::process::exit(2);
    }
    let args: Vec<String> = std::env::args().collect();
    if let [_, flag, runs] = args.as_slice() {
        if flag == "--bench" {
            let runs: usize = runs.parse().unwrap_or(10);
            let mut times: Vec<u128> = (0..runs)
                .map(|_| {
                    let start = Instant::now();
                    let _ = thumbnail::thumbnail(&request);
                    start.elapsed().as_micros()
                })
                .collect();
            times.sort_unstable();
            println!("{}", times[times.len() / 2]);
            return;
        }
    }
    match thumbnail::thumbnail(&request) {
        Ok(jpeg) => {
            if io::stdout().write_all(&jpeg).is_err() {
                std::process::exit(2);
            }
        }
        Err(reason) => {
            eprintln!("{reason}");
            std::process::exit(2);
        }
    }
}
