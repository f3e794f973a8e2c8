//! The concurrency curve of `cargo bench --bench peers`: lock+unlock pairs/s of lockwright's async
//! handle (default config), the floor and rslock at c = 1, 10, 50, 200 and 1000 (tokio tasks,
//! distinct keys), interleaved over rounds like the main table, with redis-server CPU and context
//! switches per pair. Included by `peers.rs`; `PEERS_CURVE=0` skips it.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::Arc;
use std::time::Duration;

use super::probe::PairCost;
use super::{chart, measure_probed, median, pairs_text, ratio, Contender, Peers};

pub const CONCURRENCIES: [usize; 5] = [1, 10, 50, 200, 1000];
const CONTENDERS: [Contender; 3] = [Contender::Floor, Contender::Handle, Contender::Rslock];
/// The concurrencies whose context switches per pair the report lists.
const SWITCHES_AT: [usize; 2] = [1, 50];

/// The rounds' figures of every point.
pub struct Curve {
    runs: HashMap<(Contender, usize), Vec<(f64, PairCost)>>,
}

fn short_label(which: Contender) -> &'static str {
    match which {
        Contender::Floor => "floor (SET NX PX + compare-and-delete)",
        Contender::Handle => "lockwright async handle (default config)",
        Contender::Rslock => "rslock 0.10",
        _ => unreachable!("not on the curve"),
    }
}

impl Curve {
    /// Measures every point for `duration` in each of `rounds` rounds; each round visits the
    /// concurrencies in order and the contenders in a rotated order.
    pub fn run(
        rt: &tokio::runtime::Runtime,
        peers: &Arc<Peers>,
        duration: Duration,
        warm: Duration,
        rounds: usize,
    ) -> Curve {
        eprintln!("concurrency curve: warm-up...");
        for &which in &CONTENDERS {
            for &concurrency in &CONCURRENCIES {
                measure_probed(rt, peers, which, concurrency, warm);
            }
        }
        let mut runs: HashMap<_, Vec<_>> = HashMap::new();
        for round in 0..rounds {
            for &concurrency in &CONCURRENCIES {
                for k in 0..CONTENDERS.len() {
                    let which = CONTENDERS[(k + round) % CONTENDERS.len()];
                    let (rate, _, cost) = measure_probed(rt, peers, which, concurrency, duration);
                    runs.entry((which, concurrency))
                        .or_default()
                        .push((rate, cost));
                }
            }
            eprintln!(
                "concurrency curve round {}/{rounds}: {}",
                round + 1,
                CONTENDERS
                    .iter()
                    .map(|&w| format!(
                        "{w:?} {}",
                        CONCURRENCIES
                            .iter()
                            .map(|&c| format!("{:.0}", runs[&(w, c)].last().unwrap().0))
                            .collect::<Vec<_>>()
                            .join("/")
                    ))
                    .collect::<Vec<_>>()
                    .join(", ")
            );
        }
        Curve { runs }
    }

    /// Median pairs/s of a point over the rounds.
    pub fn rate(&self, which: Contender, concurrency: usize) -> f64 {
        median(
            &self.runs[&(which, concurrency)]
                .iter()
                .map(|(rate, _)| *rate)
                .collect::<Vec<_>>(),
        )
    }

    /// Median of one per-pair figure of a point over the rounds (`None` when unreadable).
    fn cost(
        &self,
        which: Contender,
        concurrency: usize,
        field: impl Fn(&PairCost) -> Option<f64>,
    ) -> Option<f64> {
        let values: Option<Vec<f64>> = self.runs[&(which, concurrency)]
            .iter()
            .map(|(_, cost)| field(cost))
            .collect();
        values.map(|v| median(&v))
    }

    /// lockwright's peak and the largest fall from it at any higher concurrency, in % of the
    /// peak (0 when the peak is at the highest concurrency): `(peak concurrency, drop %)`.
    pub fn drop_after_peak(&self) -> (usize, f64) {
        let rates: Vec<(usize, f64)> = CONCURRENCIES
            .iter()
            .map(|&c| (c, self.rate(Contender::Handle, c)))
            .collect();
        let (peak_at, peak) = rates
            .iter()
            .copied()
            .max_by(|a, b| a.1.total_cmp(&b.1))
            .expect("five points");
        let lowest_after = rates
            .iter()
            .filter(|(c, _)| *c > peak_at)
            .map(|(_, r)| *r)
            .fold(peak, f64::min);
        if peak <= 0.0 {
            // Nothing completed at any concurrency (a smoke test's few milliseconds): no fall.
            return (peak_at, 0.0);
        }
        (peak_at, (peak - lowest_after) / peak * 100.0)
    }

    /// The markdown section: the curve's table, context switches per pair, the chart's path.
    pub fn section(&self, chart_path: &std::path::Path, chart_result: &str) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "\n### Concurrency curve: lock+unlock pairs/s, distinct keys (tokio tasks)\n"
        );
        let _ = writeln!(
            out,
            "| c | floor | lockwright async handle | lockwright vs floor | rslock 0.10 | rslock vs floor | redis-server CPU µs per pair: floor / lockwright / rslock |"
        );
        let _ = writeln!(out, "|---:|---:|---:|---:|---:|---:|---:|");
        for &c in &CONCURRENCIES {
            let floor = self.rate(Contender::Floor, c);
            let cpu = |which| {
                self.cost(which, c, |cost| Some(cost.redis_cpu_usec))
                    .map_or("n/a".to_owned(), |us| format!("{us:.2}"))
            };
            let _ = writeln!(
                out,
                "| {c} | {} | {} | {} | {} | {} | {} / {} / {} |",
                pairs_text(floor),
                pairs_text(self.rate(Contender::Handle, c)),
                ratio(self.rate(Contender::Handle, c), Some(floor)),
                pairs_text(self.rate(Contender::Rslock, c)),
                ratio(self.rate(Contender::Rslock, c), Some(floor)),
                cpu(Contender::Floor),
                cpu(Contender::Handle),
                cpu(Contender::Rslock),
            );
        }
        let _ = writeln!(
            out,
            "\nMedians of the rounds; redis-server CPU from `INFO cpu` around each run, as in the \
             server-cost table. Chart: `{}` ({chart_result}).",
            chart_path.display()
        );
        let _ = writeln!(
            out,
            "\nPer-round figures (c = {}):\n",
            CONCURRENCIES.map(|c| c.to_string()).join(" / ")
        );
        for which in CONTENDERS {
            let rounds = self.runs[&(which, CONCURRENCIES[0])].len();
            let per_round = (0..rounds)
                .map(|round| {
                    CONCURRENCIES
                        .iter()
                        .map(|&c| pairs_text(self.runs[&(which, c)][round].0))
                        .collect::<Vec<_>>()
                        .join(" / ")
                })
                .collect::<Vec<_>>()
                .join("; ");
            let _ = writeln!(out, "- {}: {per_round}", short_label(which));
        }
        let _ = writeln!(
            out,
            "\n#### Context switches per pair (same runs)\n\n\
             | contender | c | bench process (all threads, `getrusage`) | redis-server (all threads, `/proc/<pid>/task/*/status`) |\n\
             |---|---:|---:|---:|"
        );
        for which in [Contender::Floor, Contender::Handle] {
            for c in SWITCHES_AT {
                let text = |v: Option<f64>| v.map_or("n/a".to_owned(), |v| format!("{v:.2}"));
                let _ = writeln!(
                    out,
                    "| {} | {c} | {} | {} |",
                    short_label(which),
                    text(self.cost(which, c, |cost| cost.bench_switches)),
                    text(self.cost(which, c, |cost| cost.redis_switches)),
                );
            }
        }
        out
    }

    /// Draws the curve to `path`; the outcome in words for the report.
    pub fn draw(&self, path: &std::path::Path, title: &str) -> String {
        let lines: Vec<chart::Line> = CONTENDERS
            .iter()
            .map(|&which| chart::Line {
                label: short_label(which).to_owned(),
                points: CONCURRENCIES
                    .iter()
                    .map(|&c| (c as f64, self.rate(which, c)))
                    .collect(),
            })
            .collect();
        match chart::draw(path, title, &lines) {
            Ok(()) => {
                eprintln!("concurrency curve chart written to {}", path.display());
                "written by this run".to_owned()
            }
            Err(err) => format!("**not written**: {err}"),
        }
    }
}
