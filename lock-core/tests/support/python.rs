//! A real py-cachify 3.x process for the py-cachify mode tests: CPython, a virtualenv the harness
//! makes (`python3 -m venv`, then pip from the package index) under the target directory, and
//! `py_cachify_peer.py` driven one command a line. No python3 or venv: the test fails with the
//! install command.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc;
use std::sync::OnceLock;
use std::time::Duration;

pub const PYTHON_HINT: &str = "The py-cachify tests run the real py-cachify in a virtualenv and \
     never skip: install CPython with venv and pip (`apt-get install python3 python3-venv \
     python3-pip` on Debian/Ubuntu), or run `.ci/run` as root, which installs them.";

/// What py-cachify the tests install.
const REQUIREMENT: &str = "py-cachify>=3,<4";

/// A generous liveness bound for one answer of the peer (pip and interpreter start excluded).
const ANSWER_WITHIN: Duration = Duration::from_secs(60);

/// The venv's python, made once per test binary (kept in the target directory between runs; a
/// venv that cannot import py-cachify is made afresh).
fn venv_python() -> &'static Path {
    static PYTHON: OnceLock<PathBuf> = OnceLock::new();
    PYTHON.get_or_init(|| {
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
            .join(format!("py-cachify-venv-{}", env!("CARGO_PKG_NAME")));
        let python = dir.join("bin").join("python");
        let ready = || {
            Command::new(&python)
                .args(["-c", "import py_cachify, redis"])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|status| status.success())
        };
        if ready() {
            return python;
        }
        let _ = std::fs::remove_dir_all(&dir);
        let made = Command::new("python3")
            .args(["-m", "venv"])
            .arg(&dir)
            .output()
            .unwrap_or_else(|err| panic!("cannot run python3 ({err}). {PYTHON_HINT}"));
        assert!(
            made.status.success(),
            "python3 -m venv failed: {}. {PYTHON_HINT}",
            String::from_utf8_lossy(&made.stderr)
        );
        let installed = Command::new(&python)
            .args([
                "-m",
                "pip",
                "install",
                "--quiet",
                "--disable-pip-version-check",
                REQUIREMENT,
                "redis",
            ])
            .output()
            .unwrap_or_else(|err| panic!("cannot run the venv's pip ({err}). {PYTHON_HINT}"));
        assert!(
            installed.status.success(),
            "pip install '{REQUIREMENT}' redis failed: {}",
            String::from_utf8_lossy(&installed.stderr)
        );
        assert!(ready(), "py-cachify installed but cannot be imported");
        python
    })
}

/// `py_cachify_peer.py`, written beside the venv once per test binary (rewriting it while
/// another peer starts could hand that one a truncated file).
fn peer_script() -> &'static Path {
    static SCRIPT: OnceLock<PathBuf> = OnceLock::new();
    SCRIPT.get_or_init(|| {
        let script = venv_python()
            .parent()
            .and_then(Path::parent)
            .and_then(Path::parent)
            .expect("the venv's parent directory")
            .join(format!("py_cachify_peer-{}.py", env!("CARGO_PKG_NAME")));
        std::fs::write(&script, include_str!("py_cachify_peer.py")).expect("write the peer");
        script
    })
}

/// One py-cachify process on a Redis server, with its `init_cachify(prefix=...)`.
pub struct PyCachifyPeer {
    child: Child,
    stdin: ChildStdin,
    answers: mpsc::Receiver<String>,
}

impl PyCachifyPeer {
    pub fn start(redis_url: &str, prefix: &str) -> Self {
        let mut child = Command::new(venv_python())
            .arg(peer_script())
            .arg(redis_url)
            .arg(prefix)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap_or_else(|err| panic!("cannot start the py-cachify peer: {err}"));
        super::kill_with_the_test_process(child.id());
        let stdin = child.stdin.take().expect("the peer's stdin");
        let stdout = child.stdout.take().expect("the peer's stdout");
        let (send, answers) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(|line| line.ok()) {
                if send.send(line).is_err() {
                    break;
                }
            }
        });
        PyCachifyPeer {
            child,
            stdin,
            answers,
        }
    }

    /// Sends one command and returns its answer.
    pub fn ask(&mut self, command: &str) -> String {
        writeln!(self.stdin, "{command}").expect("write to the py-cachify peer");
        self.stdin.flush().expect("flush the py-cachify peer");
        self.answers
            .recv_timeout(ANSWER_WITHIN)
            .unwrap_or_else(|err| panic!("the py-cachify peer did not answer {command:?}: {err}"))
    }

    /// Sends a command whose answer comes later (a waiting acquire); read it with [`Self::answer`].
    pub fn send(&mut self, command: &str) {
        writeln!(self.stdin, "{command}").expect("write to the py-cachify peer");
        self.stdin.flush().expect("flush the py-cachify peer");
    }

    /// The next answer, if one comes within `within`.
    pub fn answer(&mut self, within: Duration) -> Option<String> {
        self.answers.recv_timeout(within).ok()
    }
}

impl Drop for PyCachifyPeer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
