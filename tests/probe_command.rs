//! `redis-healthd probe`, pg_isready for Redis, as the built binary against real Redis: its
//! exit codes (0 usable, 1 answered but not usable, 2 no answer, 3 no attempt), `--wait`,
//! `--json` and `--quiet`, and no password in any output.

mod support;

use std::time::{Duration, Instant};

use support::{free_port, run_binary, FreezableProxy, RedisServer};

fn probe(args: &[&str]) -> (Option<i32>, String, String) {
    let mut all = vec!["probe"];
    all.extend_from_slice(args);
    run_binary(&all, &[])
}

#[test]
fn a_usable_redis_exits_0_with_one_line() {
    let redis = RedisServer::start();
    let (code, out, err) = probe(&["--redis-url", &redis.url()]);
    assert_eq!(
        (code, out.as_str(), err.as_str()),
        (Some(0), format!("{}: pass\n", redis.url()).as_str(), "")
    );
    let (code, out, _) = probe(&["--redis-url", &redis.url(), "--quiet"]);
    assert_eq!((code, out.as_str()), (Some(0), ""));
    let (code, out, _) = probe(&["--redis-url", &redis.url(), "--json", "--check-writes"]);
    assert_eq!(code, Some(0));
    let doc: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(doc["status"], "pass");
    assert_eq!(doc["checks"]["redis:writable"][0]["status"], "pass");
    // A warning is still usable.
    redis.cli(&["CONFIG", "SET", "maxmemory-policy", "noeviction"]);
    redis.cli(&["CONFIG", "SET", "maxmemory", "1"]);
    let (code, out, _) = probe(&["--redis-url", &redis.url()]);
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains(": warn: redis:memory: used_memory"), "{out}");
}

#[test]
fn an_answer_that_is_not_usable_exits_1() {
    let redis = RedisServer::start_with(&["--requirepass", "right-horse"]);
    let url = format!("redis://:hunter2@127.0.0.1:{}", redis.port);
    let (code, out, _) = probe(&["--redis-url", &url]);
    assert_eq!(code, Some(1), "{out}");
    assert!(
        out.starts_with(&format!(
            "redis://:***@127.0.0.1:{}: fail: redis:responseTime: WRONGPASS",
            redis.port
        )),
        "{out}"
    );
    assert!(!out.contains("hunter2"));
    let (code, out, _) = probe(&["--redis-url", &redis.url()]);
    assert_eq!(code, Some(1));
    assert!(out.contains("NOAUTH"), "{out}");
    // A failed state check is an answer too.
    let good = format!("redis://:right-horse@127.0.0.1:{}", redis.port);
    let (code, out, _) = probe(&["--redis-url", &good, "--expect-role", "replica"]);
    assert_eq!(code, Some(1));
    assert!(
        out.contains("redis:role: role is master, expected replica"),
        "{out}"
    );
    assert!(!out.contains("right-horse"), "{out}");
}

#[test]
fn loading_exits_1() {
    let redis = RedisServer::loading();
    let (code, out, _) = probe(&["--redis-url", &redis.url()]);
    assert_eq!(code, Some(1), "{out}");
    assert!(out.contains("LOADING"), "{out}");
}

#[test]
fn no_answer_exits_2_within_the_timeout() {
    let url = format!("redis://127.0.0.1:{}", free_port());
    let started = Instant::now();
    let (code, out, _) = probe(&["--redis-url", &url]);
    println!("refused: {out:?} after {:?}", started.elapsed());
    assert_eq!(code, Some(2));
    assert_eq!(
        out,
        format!("{url}: no response: redis:responseTime: unreachable: Connection refused\n")
    );
    // A path that swallows everything: the timeout, not a hang.
    let redis = RedisServer::start();
    let proxy = FreezableProxy::start(format!("127.0.0.1:{}", redis.port).parse().unwrap());
    proxy.freeze(true);
    let started = Instant::now();
    let (code, out, _) = probe(&[
        "--redis-url",
        &format!("redis://{}", proxy.addr),
        "--timeout",
        "300ms",
    ]);
    let took = started.elapsed();
    println!("black hole: {out:?} after {took:?}");
    assert_eq!(code, Some(2), "{out}");
    assert!(out.contains("timed out after 300ms"), "{out}");
    assert!(took < Duration::from_secs(3), "{took:?}");
}

#[test]
fn wait_retries_until_redis_comes_up_or_the_time_is_up() {
    let port = free_port();
    let url = format!("redis://127.0.0.1:{port}");
    let starter = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(1500));
        RedisServer::start_on(port, &[])
    });
    let started = Instant::now();
    let (code, out, _) = probe(&["--redis-url", &url, "--wait", "20s"]);
    let took = started.elapsed();
    let _redis = starter.join().unwrap();
    println!("started late: {out:?} after {took:?}");
    assert_eq!(code, Some(0), "{out}");
    assert!(
        took >= Duration::from_millis(1500) && took < Duration::from_secs(5),
        "{took:?}"
    );

    let never = format!("redis://127.0.0.1:{}", free_port());
    let started = Instant::now();
    let (code, out, _) = probe(&["--redis-url", &never, "--wait", "2s"]);
    let took = started.elapsed();
    println!("never started: {out:?} after {took:?}");
    assert_eq!(code, Some(2), "the last attempt's code: {out}");
    assert!(
        took >= Duration::from_secs(2) && took < Duration::from_secs(4),
        "{took:?}"
    );
}

#[test]
fn no_attempt_exits_3() {
    for args in [
        &["--bogus"][..],
        &["--timeout", "soon"][..],
        &["--redis-url", "http://u:hunter2@h:6379"][..],
        &["--redis-password-file", "/nonexistent/password"][..],
        &["--quiet", "--json"][..],
    ] {
        let (code, out, err) = probe(args);
        assert_eq!(code, Some(3), "{args:?}: {out}{err}");
        assert!(!err.contains("hunter2"), "{err}");
    }
    // The daemon's own usage errors keep exit code 2.
    let (code, _, _) = run_binary(&["--bogus"], &[]);
    assert_eq!(code, Some(2));
    let (code, out, _) = probe(&["--help"]);
    assert_eq!(code, Some(0));
    assert!(out.contains("--wait"), "{out}");
}
