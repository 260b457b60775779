//! The conventions people already use, against real Redis: kube-apiserver's `?verbose`,
//! `?exclude` and per-check paths, and the status page for people, loaded in a real headless
//! Chromium (screenshots land in `target/` for people to look at).

mod support;

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use support::{start_fast, RedisServer, DETECT};

#[test]
fn verbose_text_lists_each_check_and_follows_redis() {
    let mut redis = RedisServer::start();
    let daemon = start_fast(&redis.url(), &["--expect-role", "master"]);
    daemon.wait_for("/readyz", 200, Duration::from_secs(5));
    let reply = daemon.get("/readyz?verbose");
    assert_eq!(reply.status, 200);
    assert_eq!(
        reply.header("content-type").as_deref(),
        Some("text/plain; charset=utf-8")
    );
    assert_eq!(
        reply.body,
        "[+]probe-loop ok\n[+]shutdown ok\n[+]redis:responseTime ok\n[+]redis:role ok\n[+]redis:memory ok\n\
         [+]redis:persistence ok\nreadyz check passed\n"
    );
    println!("GET /readyz?verbose, Redis up:\n{}", reply.body);
    assert_eq!(
        daemon.get("/livez?verbose").body,
        "[+]probe-loop ok\nlivez check passed\n"
    );
    assert_eq!(daemon.get("/readyz/redis:role").body, "ok\n");

    // A demoted master: the role check fails, and can be excluded for one request.
    let other = RedisServer::start();
    redis.cli(&["REPLICAOF", "127.0.0.1", &other.port.to_string()]);
    daemon.wait_for("/readyz", 503, DETECT);
    let reply = daemon.get("/readyz?verbose");
    assert_eq!(reply.status, 503);
    let expected = format!(
        "[-]redis:role failed: role is replica of 127.0.0.1:{}, expected master\n",
        other.port
    );
    assert!(reply.body.contains(&expected), "{}", reply.body);
    assert!(reply.body.ends_with("readyz check failed\n"), "{}", reply.body);
    let reply = daemon.get("/readyz/redis%3Arole");
    assert_eq!(reply.status, 503);
    assert!(
        reply.body.starts_with("failed: role is replica of"),
        "{}",
        reply.body
    );
    assert_eq!(daemon.status("/readyz/redis:responseTime"), 200);
    assert_eq!(daemon.status("/readyz/redis:nope"), 404);
    let reply = daemon.get("/readyz?verbose&exclude=redis:role&exclude=redis:nope");
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert!(
        reply.body.contains("[+]redis:role excluded: ok\n"),
        "{}",
        reply.body
    );
    assert!(
        reply
            .body
            .contains("warn: some health checks cannot be excluded: no matches for \"redis:nope\"\n"),
        "{}",
        reply.body
    );
    let reply = daemon.get("/readyz?exclude=redis:role");
    assert_eq!(reply.status, 200);
    assert_eq!(
        reply.json()["status"],
        "warn",
        "the replica's link: {}",
        reply.body
    );
    // Without the parameters nothing changed: the pre-rendered health+json.
    let reply = daemon.get("/readyz");
    assert_eq!(
        reply.header("content-type").as_deref(),
        Some("application/health+json")
    );

    // Redis gone: the connection's reason in the text; liveness untouched.
    redis.kill();
    support::wait_for_output(daemon.addr, "Connection refused", DETECT);
    let reply = daemon.get("/health?verbose");
    assert_eq!(reply.status, 503);
    assert!(
        reply
            .body
            .contains("[-]redis:responseTime failed: unreachable: Connection refused\n"),
        "{}",
        reply.body
    );
    assert!(reply.body.ends_with("health check failed\n"));
    assert_eq!(daemon.status("/livez?verbose"), 200);
    assert_eq!(daemon.status("/livez/probe-loop"), 200);
    // A Redis check under /livez is a 404 that says where it lives, and why.
    let reply = daemon.get("/livez/redis:role");
    assert_eq!(reply.status, 404);
    assert!(
        reply
            .body
            .contains("readiness checks, never liveness ones: see /readyz/redis:role")
            && reply.body.contains("it has: probe-loop"),
        "{}",
        reply.body
    );
    let reply = daemon.get("/readyz/redis:nope");
    assert!(
        reply
            .body
            .contains("it has: probe-loop, shutdown, redis:responseTime"),
        "{}",
        reply.body
    );
}

/// The screenshot's width and the rightmost pixel of the sparkline's blue line (#1a73e8).
fn rightmost_line_pixel(png_file: &std::path::Path) -> (u32, u32) {
    let decoder = png::Decoder::new(std::io::BufReader::new(std::fs::File::open(png_file).unwrap()));
    let mut reader = decoder.read_info().unwrap();
    let mut pixels = vec![0; reader.output_buffer_size().unwrap()];
    let frame = reader.next_frame(&mut pixels).unwrap();
    let channels = frame.color_type.samples();
    let mut right = 0;
    for (i, px) in pixels[..frame.buffer_size()].chunks(channels).enumerate() {
        let (r, g, b) = (px[0], px[1], px[2]);
        if r < 90 && (90..160).contains(&g) && b > 190 {
            right = right.max(i as u32 % frame.width);
        }
    }
    (frame.width, right)
}

/// Headless Chromium as the probe-free way a person sees the page: `--dump-dom` after load,
/// and a screenshot.
struct Browser {
    profile: tempfile::TempDir,
}

impl Browser {
    fn new() -> Self {
        Self {
            profile: tempfile::tempdir().unwrap(),
        }
    }

    fn run(&self, extra: &[&str], url: &str) -> String {
        let out = Command::new("chromium")
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--hide-scrollbars",
            ])
            .arg(format!("--user-data-dir={}", self.profile.path().display()))
            .args(extra)
            .arg(url)
            .output()
            .expect("run chromium (apt-get install chromium, or scripts/test)");
        assert!(
            out.status.success(),
            "chromium: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn dom(&self, url: &str) -> String {
        self.run(&["--dump-dom"], url)
    }

    fn screenshot(&self, url: &str, name: &str) -> PathBuf {
        self.screenshot_at(1000, url, name)
    }

    fn screenshot_at(&self, width: u32, url: &str, name: &str) -> PathBuf {
        let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("target")
            .join("screenshots");
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(name);
        let _ = std::fs::remove_file(&path);
        self.run(
            &[
                &format!("--window-size={width},620"),
                &format!("--screenshot={}", path.display()),
            ],
            url,
        );
        let size = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
        assert!(size > 1000, "no screenshot at {}", path.display());
        path
    }
}

#[test]
fn the_status_page_shows_the_checks_in_a_real_browser() {
    let mut redis = RedisServer::start();
    let daemon = start_fast(&redis.url(), &["--check-writes"]);
    daemon.wait_for("/readyz", 200, Duration::from_secs(5));
    // A few checks for the sparkline.
    std::thread::sleep(support::INTERVAL * 4);
    let url = format!("http://{}/", daemon.addr);
    let browser = Browser::new();
    let dom = browser.dom(&url);
    for text in [
        "Redis is healthy",
        "redis:responseTime",
        "redis:role",
        "redis:memory",
        "redis:writable",
        "master",
        "<polyline",
        "Last check",
    ] {
        assert!(dom.contains(text), "{text:?} missing from the page:\n{dom}");
    }
    let rows = dom.matches("<tr class=\"pass\">").count();
    assert_eq!(rows, 5, "one passing row per check:\n{dom}");
    let shot = browser.screenshot(&url, "status-page-up.png");
    println!("Redis up: {rows} passing rows; screenshot {}", shot.display());
    // At 900 px the sparkline spans the page's width: its line reaches the right border.
    let shot = browser.screenshot_at(900, &url, "status-page-900.png");
    let (width, right) = rightmost_line_pixel(&shot);
    println!("at {width} px the sparkline's line ends at x = {right}");
    assert!(
        right + 40 >= width,
        "the line stops {} px short of the edge",
        width - right
    );

    redis.kill();
    support::wait_for_output(daemon.addr, "Connection refused", DETECT);
    // The page reloads itself; a fresh load is what the browser shows next.
    let dom = browser.dom(&url);
    assert!(dom.contains("Redis is not usable"), "{dom}");
    assert!(dom.contains("Connection refused"), "{dom}");
    assert!(
        dom.contains("class=\"failed\""),
        "the failed check marks the sparkline:\n{dom}"
    );
    let shot = browser.screenshot(&url, "status-page-down.png");
    println!("Redis down: the reason is shown; screenshot {}", shot.display());
    // A program still gets the JSON index.
    let reply = daemon.get("/");
    assert_eq!(reply.status, 404);
    let endpoints = reply.json()["endpoints"].clone();
    for path in ["/", "/livez", "/livez/<check>", "/readyz/<check>", "/metrics"] {
        assert!(
            endpoints.as_array().unwrap().iter().any(|e| e == path),
            "{path} in {endpoints}"
        );
    }
}

#[test]
fn a_hostile_reason_is_text_on_the_page_not_markup() {
    let redis = RedisServer::start();
    let daemon = start_fast(&redis.url(), &["--expect-role", "master"]);
    daemon.wait_for("/readyz", 200, Duration::from_secs(5));
    // Redis repeats whatever master host it is given in INFO, and so in the role's reason.
    redis.cli(&[
        "REPLICAOF",
        "<script>document.title='pwned'</script><b>bold</b>",
        "6379",
    ]);
    support::wait_for_output(daemon.addr, "<script>", DETECT);
    let url = format!("http://{}/", daemon.addr);
    let browser = Browser::new();
    let dom = browser.dom(&url);
    assert!(
        !dom.contains("<script>document.title"),
        "the reason became markup:\n{dom}"
    );
    assert!(!dom.contains("<b>bold</b>"), "{dom}");
    assert!(
        dom.contains("&lt;script&gt;document.title='pwned'&lt;/script&gt;&lt;b&gt;bold&lt;/b&gt;"),
        "{dom}"
    );
    assert!(
        dom.contains("<title>fail: redis-healthd</title>"),
        "a script ran:\n{dom}"
    );
}

#[test]
fn a_wrong_password_reads_as_the_server_reply_in_the_text_and_the_page() {
    let redis = RedisServer::start_with(&["--requirepass", "right-horse"]);
    let daemon = start_fast(&format!("redis://:hunter2@127.0.0.1:{}", redis.port), &[]);
    support::wait_for_output(daemon.addr, "WRONGPASS", DETECT);
    let reply = daemon.get("/readyz?verbose");
    assert_eq!(reply.status, 503);
    assert!(
        reply
            .body
            .contains("[-]redis:responseTime failed: WRONGPASS invalid username-password pair"),
        "{}",
        reply.body
    );
    let reply = daemon.get("/readyz/redis:responseTime");
    assert_eq!(reply.status, 503);
    assert!(reply.body.starts_with("failed: WRONGPASS"), "{}", reply.body);
    let dom = Browser::new().dom(&format!("http://{}/", daemon.addr));
    assert!(dom.contains("WRONGPASS"), "{dom}");
    assert!(!dom.contains("hunter2") && !reply.body.contains("hunter2"));
}
