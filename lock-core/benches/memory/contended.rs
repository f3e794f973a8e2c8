//! The contended rows of `cargo bench -p lock-core --bench memory`: 8 threads acquire+release in a
//! loop for a fixed time, all on 1 key or each pair on one of 1,000 keys (picked pseudo-randomly,
//! the same sequence for every contender), next to the floors measured in the same run: a
//! `std::sync::Mutex<()>` per key for the blocking API, a `tokio::sync::Mutex<()>` per key for the
//! async one (8 tasks on an 8-worker multi-thread runtime). Included by `memory.rs`.

use std::collections::HashMap;
use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use lock_core::{Lock, MemoryBackend};

/// Threads (or tasks) contending.
const THREADS: usize = 8;
/// The key counts: every pair on one key, or on one of 1,000.
const KEY_COUNTS: [usize; 2] = [1, 1000];

#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
enum Contender {
    StdMutex,
    LockwrightBlocking,
    TokioMutex,
    LockwrightAsync,
}

impl Contender {
    const ALL: [Contender; 4] = [
        Contender::StdMutex,
        Contender::LockwrightBlocking,
        Contender::TokioMutex,
        Contender::LockwrightAsync,
    ];

    fn label(self) -> &'static str {
        match self {
            Contender::StdMutex => "floor: `std::sync::Mutex<()>` per key, lock + drop (threads)",
            Contender::LockwrightBlocking => {
                "lockwright memory, `acquire_blocking()` + drop, waiting (threads)"
            }
            Contender::TokioMutex => {
                "floor: `tokio::sync::Mutex<()>` per key, `lock().await` + drop (tasks)"
            }
            Contender::LockwrightAsync => {
                "lockwright memory, `acquire().await` + drop, waiting (tasks)"
            }
        }
    }

    /// The floor a lockwright row is compared with.
    fn floor(self) -> Option<Contender> {
        match self {
            Contender::LockwrightBlocking => Some(Contender::StdMutex),
            Contender::LockwrightAsync => Some(Contender::TokioMutex),
            Contender::StdMutex | Contender::TokioMutex => None,
        }
    }
}

/// One set of keys, for every contender.
struct Keys {
    std: Vec<std::sync::Mutex<()>>,
    tokio: Vec<tokio::sync::Mutex<()>>,
    /// Default lease (renewed by the watchdog), waiting without a timeout.
    locks: Vec<Lock>,
}

impl Keys {
    fn new(count: usize) -> Keys {
        let backend = MemoryBackend::shared();
        Keys {
            std: (0..count).map(|_| std::sync::Mutex::new(())).collect(),
            tokio: (0..count).map(|_| tokio::sync::Mutex::new(())).collect(),
            locks: (0..count)
                .map(|i| Lock::with_backend(format!("contended-{i}"), &backend).nowait(false))
                .collect(),
        }
    }

    fn len(&self) -> usize {
        self.locks.len()
    }
}

/// The key of a thread's next pair: xorshift64, seeded per thread, so every contender sees the
/// same sequence of keys.
fn next_key(state: &mut u64, keys: usize) -> usize {
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    (*state % keys as u64) as usize
}

fn seed(thread: usize) -> u64 {
    0x9E37_79B9_7F4A_7C15 ^ (thread as u64 + 1).wrapping_mul(0xBF58_476D_1CE4_E5B9)
}

fn blocking_thread(which: Contender, keys: &Keys, thread: usize, deadline: Instant) -> u64 {
    let mut state = seed(thread);
    let mut pairs = 0u64;
    while Instant::now() < deadline {
        for _ in 0..16 {
            let k = next_key(&mut state, keys.len());
            match which {
                Contender::StdMutex => drop(black_box(keys.std[k].lock().unwrap())),
                Contender::LockwrightBlocking => drop(keys.locks[k].acquire_blocking().unwrap()),
                _ => unreachable!("tasks, not threads"),
            }
        }
        pairs += 16;
    }
    pairs
}

async fn task(which: Contender, keys: Arc<Keys>, thread: usize, deadline: Instant) -> u64 {
    let mut state = seed(thread);
    let mut pairs = 0u64;
    while Instant::now() < deadline {
        for _ in 0..16 {
            let k = next_key(&mut state, keys.len());
            match which {
                Contender::TokioMutex => drop(black_box(keys.tokio[k].lock().await)),
                Contender::LockwrightAsync => drop(keys.locks[k].acquire().await.unwrap()),
                _ => unreachable!("threads, not tasks"),
            }
        }
        pairs += 16;
        // A task that never waits would never yield; let the others (and the deadline) run.
        tokio::task::yield_now().await;
    }
    pairs
}

/// Pairs/s of `which`, `THREADS` workers on `keys`, for `duration`.
fn measure(
    rt: &tokio::runtime::Runtime,
    keys: &Arc<Keys>,
    which: Contender,
    duration: Duration,
) -> f64 {
    let start = Instant::now();
    let deadline = start + duration;
    let pairs: u64 = match which {
        Contender::StdMutex | Contender::LockwrightBlocking => std::thread::scope(|scope| {
            let threads: Vec<_> = (0..THREADS)
                .map(|t| scope.spawn(move || blocking_thread(which, keys, t, deadline)))
                .collect();
            threads.into_iter().map(|t| t.join().unwrap()).sum()
        }),
        Contender::TokioMutex | Contender::LockwrightAsync => rt.block_on(async {
            let tasks: Vec<_> = (0..THREADS)
                .map(|t| tokio::spawn(task(which, Arc::clone(keys), t, deadline)))
                .collect();
            let mut pairs = 0;
            for t in tasks {
                pairs += t.await.unwrap();
            }
            pairs
        }),
    };
    // The workers finish their last batch after the deadline: divide by the time they took.
    pairs as f64 / start.elapsed().as_secs_f64()
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    let n = values.len();
    if n % 2 == 1 {
        values[n / 2]
    } else {
        (values[n / 2 - 1] + values[n / 2]) / 2.0
    }
}

fn pairs_text(rate: f64) -> String {
    let digits = (rate.round() as u64).to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// Measures every row, `rounds` rounds of `duration` each, the contenders interleaved in a rotated
/// order, and prints the table of medians with the ratios to the floors.
pub fn print_table(duration: Duration, rounds: usize) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(THREADS)
        .enable_all()
        .build()
        .unwrap();
    let mut runs: HashMap<(Contender, usize), Vec<f64>> = HashMap::new();
    for count in KEY_COUNTS {
        let keys = Arc::new(Keys::new(count));
        // Warm-up: threads, the runtime's workers, the backend's tables.
        for which in Contender::ALL {
            measure(&rt, &keys, which, duration.min(Duration::from_millis(200)));
        }
        for round in 0..rounds {
            for k in 0..Contender::ALL.len() {
                let which = Contender::ALL[(k + round) % Contender::ALL.len()];
                let rate = measure(&rt, &keys, which, duration);
                runs.entry((which, count)).or_default().push(rate);
            }
        }
    }
    let medians: HashMap<(Contender, usize), f64> = runs
        .iter_mut()
        .map(|(point, rates)| (*point, median(rates)))
        .collect();
    let rate = |which, count| medians[&(which, count)];
    let cores = std::thread::available_parallelism().map_or(1, usize::from);
    println!(
        "\ncontended acquire+release, {THREADS} threads (async: {THREADS} tasks on a \
         {THREADS}-worker multi-thread runtime), {cores} cores; pairs/s, the median of {rounds} \
         round(s) of {:.2} s, interleaved:\n",
        duration.as_secs_f64()
    );
    println!("| contender | 1 key | 1,000 keys | 1 key vs floor | 1,000 keys vs floor |");
    println!("|---|---:|---:|---:|---:|");
    for which in Contender::ALL {
        let (one, many) = (rate(which, 1), rate(which, 1000));
        let vs = |mine: f64, count| match which.floor() {
            Some(floor) => format!("{:.2}x", mine / rate(floor, count)),
            None => "—".to_owned(),
        };
        let (vs_one, vs_many) = (vs(one, 1), vs(many, 1000));
        println!(
            "| {} | {} | {} | {vs_one} | {vs_many} |",
            which.label(),
            pairs_text(one),
            pairs_text(many),
        );
    }
}
