//! The README as a newcomer follows it: every block marked `<!-- recipe -->` runs word for word
//! against a stock `redis-server`, after the block marked `<!-- recipe: setup -->`, each in a
//! network namespace of its own (only a loopback, so ports 6379 and 8558 are free as the README
//! assumes, and nothing can reach beyond it) with a `/tmp` of its own; every `# expect:` line must
//! show in what it prints. And `scripts/demo`, the Quick start's first command.

mod support;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const README: &str = include_str!("../README.md");

/// The fenced `sh` block after each marker line, in order: (marker, block).
fn recipes() -> Vec<(&'static str, String)> {
    let mut found = Vec::new();
    let mut lines = README.lines();
    while let Some(line) = lines.next() {
        let marker = match line.trim() {
            "<!-- recipe -->" => "recipe",
            "<!-- recipe: setup -->" => "setup",
            _ => continue,
        };
        assert_eq!(
            lines.next().map(str::trim),
            Some("```sh"),
            "a ```sh block after the marker"
        );
        let block: Vec<&str> = lines.by_ref().take_while(|l| l.trim() != "```").collect();
        found.push((marker, block.join("\n")));
    }
    found
}

/// The `# expect:` lines of a block.
fn expectations(block: &str) -> Vec<&str> {
    block
        .lines()
        .filter_map(|l| l.trim().strip_prefix("# expect:"))
        .map(str::trim)
        .collect()
}

/// A directory for one recipe's `/tmp`, holding `bin/redis-healthd` (the binary under test,
/// linked in: the binary itself may live under the real `/tmp`, which the recipe cannot see).
fn private_tmp() -> tempfile::TempDir {
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let bin = dir.path().join("bin");
    std::fs::create_dir(&bin).unwrap();
    let target = bin.join("redis-healthd");
    if std::fs::hard_link(support::binary(), &target).is_err() {
        std::fs::copy(support::binary(), &target).unwrap();
    }
    dir
}

/// Runs `script` under bash (`set -e`) in a new network, PID and mount namespace, with
/// [`private_tmp`] as its `/tmp`; returns (success, everything printed). Every process it
/// started dies with it.
fn run_isolated(script: &str) -> (bool, String) {
    let tmp = private_tmp();
    let prelude = format!(
        "set -e\nip link set lo up\nmount --bind {} /tmp\ncd /tmp\nexport PATH=/tmp/bin:$PATH\n",
        tmp.path().display()
    );
    let mut command = Command::new("unshare");
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        command.arg("--map-root-user");
    }
    let out = command
        .args(["--net", "--pid", "--fork", "--mount-proc", "bash", "-c"])
        .arg(format!("{prelude}{script}"))
        .stdin(Stdio::null())
        .env_remove("RUST_LOG")
        .output()
        .expect("run unshare (util-linux) and bash");
    let text = String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    (out.status.success(), text)
}

#[test]
fn every_readme_recipe_works_as_written_on_a_stock_redis() {
    let all = recipes();
    let setup = all
        .iter()
        .find(|(marker, _)| *marker == "setup")
        .map(|(_, block)| block.clone())
        .expect("a setup recipe");
    let recipes: Vec<&String> = all
        .iter()
        .filter(|(m, _)| *m == "recipe")
        .map(|(_, b)| b)
        .collect();
    assert!(recipes.len() >= 6, "{} recipes", recipes.len());
    // In parallel: each waits a few seconds for checks, and each has its own namespace.
    let runs: Vec<_> = recipes
        .iter()
        .map(|recipe| {
            let script = format!("{setup}\n{recipe}\n");
            std::thread::spawn(move || (script.clone(), run_isolated(&script)))
        })
        .collect();
    for run in runs {
        let (script, (ok, output)) = run.join().unwrap();
        assert!(ok, "the recipe failed:\n{script}\n--- it printed:\n{output}");
        for expected in expectations(&script) {
            assert!(
                output.contains(expected),
                "{expected:?} not printed by\n{script}\n--- it printed:\n{output}"
            );
        }
    }
}

/// The Quick start's `scripts/demo` (with the test's binary, so no release build): a
/// throwaway Redis and the daemon, ready; what it prints to curl answers; SIGTERM (what Ctrl-C
/// does) stops both and removes the Redis's directory.
#[test]
fn the_demo_runs_a_passing_daemon_and_cleans_up() {
    let listen = format!("127.0.0.1:{}", support::free_port());
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/demo");
    let started = Instant::now();
    let mut demo = Command::new(&script)
        .env("REDIS_HEALTHD_DEMO_BINARY", support::binary())
        .env("REDIS_HEALTHD_DEMO_LISTEN", &listen)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run scripts/demo");
    let mut printed = String::new();
    let mut stdout = BufReader::new(demo.stdout.take().unwrap());
    while !printed.contains("Ctrl-C stops both") {
        let mut line = String::new();
        if stdout.read_line(&mut line).unwrap() == 0 || started.elapsed() > Duration::from_secs(30) {
            let mut err = String::new();
            let _ = std::io::Read::read_to_string(demo.stderr.as_mut().unwrap(), &mut err);
            panic!("the demo stopped early:\n{printed}\n{err}");
        }
        printed.push_str(&line);
    }
    println!("demo ready after {:?}:\n{printed}", started.elapsed());
    assert!(
        printed.contains(&format!("ok: 200 OK from http://{listen}/readyz")),
        "{printed}"
    );
    let addr = listen.parse().unwrap();
    assert_eq!(support::get(addr, "/readyz").status, 200);
    let redis_port: u16 = printed
        .split("throwaway Redis on 127.0.0.1:")
        .nth(1)
        .and_then(|rest| rest.split(|c: char| !c.is_ascii_digit()).next())
        .and_then(|p| p.parse().ok())
        .expect("the Redis port in the demo's text");
    let log_dir = printed
        .split("Its log is ")
        .nth(1)
        .and_then(|rest| rest.split("/redis-healthd.log").next())
        .map(PathBuf::from)
        .expect("the log's path");
    assert!(log_dir.is_dir());

    let status = Command::new("kill")
        .args(["-TERM", &demo.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    support::wait_until(Duration::from_secs(10), "the demo to exit", || {
        demo.try_wait().unwrap().is_some()
    });
    assert_eq!(demo.wait().unwrap().code(), Some(0));
    support::wait_until(Duration::from_secs(5), "both stopped", || {
        std::net::TcpStream::connect(addr).is_err()
            && std::net::TcpStream::connect(("127.0.0.1", redis_port)).is_err()
    });
    assert!(!log_dir.exists(), "{} left behind", log_dir.display());
}
