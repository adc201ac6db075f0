//! Driving a real browser for the dashboard's tests and benchmarks: Debian's
//! `chromium`, headless, through `chromedriver` (W3C WebDriver over HTTP, sent with
//! [`crate::http::request`]; no client library).

use crate::http::request;
use serde_json::{json, Value};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// The key WebDriver names an element by.
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

/// Where Debian puts the driver and the browser.
const DRIVERS: [&str; 2] = ["/usr/bin/chromedriver", "/usr/lib/chromium/chromedriver"];
const CHROMIUM: &str = "/usr/bin/chromium";

/// A headless chromium session; ended (and its driver stopped) on drop.
pub struct Browser {
    driver: std::process::Child,
    addr: SocketAddr,
    session: String,
}

impl Browser {
    /// Starts chromedriver on `port` and a headless chromium of `width` × `height`.
    /// Panics, saying what to install, when they are missing: a browser test that
    /// cannot run fails.
    pub fn start(port: u16, width: u32, height: u32) -> Browser {
        Self::start_with(port, width, height, &[])
    }

    /// [`Browser::start`] with more chromium flags (`--force-dark-mode`).
    pub fn start_with(port: u16, width: u32, height: u32, flags: &[&str]) -> Browser {
        let exe = DRIVERS
            .into_iter()
            .find(|p| std::path::Path::new(p).exists())
            .expect("chromedriver is not installed: apt-get install chromium chromium-driver (.ci/run does)");
        let driver = std::process::Command::new(exe)
            .arg(format!("--port={port}"))
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("chromedriver starts");
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let start = Instant::now();
        while request(addr, "GET", "/status", &[], "").is_err() {
            assert!(
                start.elapsed() < Duration::from_secs(20),
                "chromedriver answers"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        let caps = json!({"capabilities": {"alwaysMatch": {"browserName": "chrome",
            "goog:chromeOptions": {"binary": CHROMIUM,
              "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                       format!("--window-size={width},{height}"), "--lang=en-US"]}}}});
        let mut caps = caps;
        if let Some(args) =
            caps["capabilities"]["alwaysMatch"]["goog:chromeOptions"]["args"].as_array_mut()
        {
            args.extend(flags.iter().map(|f| json!(f)));
        }
        let a = request(
            addr,
            "POST",
            "/session",
            &[("Content-Type", "application/json")],
            &caps.to_string(),
        )
        .expect("new session");
        let v = a.json();
        let session = v["value"]["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("no session: {v}"))
            .to_owned();
        Browser {
            driver,
            addr,
            session,
        }
    }

    /// One WebDriver command of the session; its `value` (panics on an error).
    pub fn call(&self, method: &str, path: &str, body: Value) -> Value {
        let path = format!("/session/{}{path}", self.session);
        let body = if method == "POST" {
            body.to_string()
        } else {
            String::new()
        };
        let a = request(
            self.addr,
            method,
            &path,
            &[("Content-Type", "application/json")],
            &body,
        )
        .expect("webdriver answers");
        let v = a.json();
        if v["value"].get("error").is_some() {
            panic!("webdriver {path}: {}", v["value"]);
        }
        v["value"].clone()
    }

    /// Opens `url`.
    pub fn go(&self, url: &str) {
        self.call("POST", "/url", json!({ "url": url }));
    }

    /// The current URL.
    pub fn url(&self) -> String {
        self.call("GET", "/url", Value::Null)
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }

    /// Runs `script` (a function body; a returned promise is awaited); its result.
    pub fn js(&self, script: &str) -> Value {
        self.call(
            "POST",
            "/execute/sync",
            json!({"script": script, "args": []}),
        )
    }

    /// Waits until the JS expression `expr` is truthy; its value. Panics after
    /// 30 s with what the page says.
    pub fn until(&self, what: &str, expr: &str) -> Value {
        let start = Instant::now();
        loop {
            let v = self.js(&format!("return {expr};"));
            if !(v.is_null() || v == json!(false) || v == json!("") || v == json!(0)) {
                return v;
            }
            if start.elapsed() > Duration::from_secs(30) {
                let page = self.js("return document.body.innerText");
                panic!("timed out waiting for {what}; the page says: {page}");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn find(&self, css: &str) -> String {
        let v = self.call(
            "POST",
            "/element",
            json!({"using": "css selector", "value": css}),
        );
        v[ELEMENT].as_str().expect("element id").to_owned()
    }

    /// Clicks the element `css` selects, as a user would.
    pub fn click(&self, css: &str) {
        let id = self.find(css);
        self.call("POST", &format!("/element/{id}/click"), json!({}));
    }

    /// Types `text` into the element `css` selects.
    pub fn type_in(&self, css: &str, text: &str) {
        let id = self.find(css);
        self.call(
            "POST",
            &format!("/element/{id}/value"),
            json!({ "text": text }),
        );
    }

    /// Forgets every cookie (an anonymous visitor from here on).
    pub fn clear_cookies(&self) {
        self.call("DELETE", "/cookie", Value::Null);
    }

    /// A PNG of the viewport, written to `path`.
    pub fn screenshot(&self, path: &std::path::Path) {
        use base64::Engine;
        let v = self.call("GET", "/screenshot", Value::Null);
        let png = base64::engine::general_purpose::STANDARD
            .decode(v.as_str().expect("base64"))
            .expect("png");
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).expect("screenshot dir");
        }
        std::fs::write(path, png).expect("write screenshot");
    }
}

/// The reference server's dashboard, as its tests and benchmarks drive it.
impl Browser {
    /// Opens the dashboard at `root` (`http://127.0.0.1:8000`) and logs in.
    pub fn log_in(&self, root: &str, email: &str, password: &str) {
        self.go(&format!("{root}/"));
        self.until("the login form", "document.querySelector('#login')");
        self.type_in("#login input[name=email]", email);
        self.type_in("#login input[name=password]", password);
        self.click("#login button[type=submit]");
    }

    /// Waits until the dashboard has drawn its top row and every panel.
    pub fn dashboard_settled(&self) {
        self.until("the top row", "document.body.dataset.loaded === 'true'");
        self.until(
            "every panel",
            "![...document.querySelectorAll('.slot')].some(s => s.textContent.includes('Loading'))",
        );
    }

    /// The top row: each number's `data-metric` and `data-value`.
    pub fn top_row(&self) -> Vec<(String, f64)> {
        let v = self.js(
            "return [...document.querySelectorAll('.toprow [data-metric]')].map(e => [e.dataset.metric, e.dataset.value])",
        );
        v.as_array()
            .expect("top row")
            .iter()
            .map(|p| {
                let value = p[1].as_str().unwrap_or_default();
                (
                    p[0].as_str().unwrap_or_default().to_owned(),
                    value.parse().unwrap_or(f64::NAN),
                )
            })
            .collect()
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let path = format!("/session/{}", self.session);
        let _ = request(self.addr, "DELETE", &path, &[], "");
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}
