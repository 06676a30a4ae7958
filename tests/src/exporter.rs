//! Pods for a real Prometheus to scrape: each serves `/metrics` in the text exposition format
//! with a request counter and a classic latency histogram, driven by a traffic schedule in
//! real time. A pod can restart: it answers 503 for a moment, then its counters start again
//! from zero, as a new process's do.

use std::convert::Infallible;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::Full;
use hyper::service::service_fn;
use hyper::{Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

/// Latency bucket bounds of the histogram (seconds), `+Inf` implied.
pub const BUCKETS: [f64; 4] = [0.1, 0.25, 0.5, 1.0];
/// What a fast request takes, and a slow one.
pub const FAST_SECONDS: f64 = 0.05;
pub const SLOW_SECONDS: f64 = 0.8;

/// From `from` (since the pods started) on, each pod serves `rate` requests per second, of
/// which `slow` (a fraction) take [`SLOW_SECONDS`] and the rest [`FAST_SECONDS`].
#[derive(Clone, Copy, Debug)]
pub struct Phase {
    pub from: Duration,
    pub rate: f64,
    pub slow: f64,
}

/// One pod's restart: unreachable from `at` for `down` (serving nothing), then counting from
/// zero.
#[derive(Clone, Copy, Debug)]
pub struct Restart {
    pub pod: usize,
    pub at: Duration,
    pub down: Duration,
}

/// The schedule every pod follows.
#[derive(Clone, Debug)]
pub struct Traffic {
    pub phases: Vec<Phase>,
    pub restart: Option<Restart>,
}

impl Traffic {
    /// Requests served between `from` and `to` (offsets since the start): all, and slow ones.
    fn served(&self, from: Duration, to: Duration) -> (f64, f64) {
        let mut all = 0.0;
        let mut slow = 0.0;
        for (i, phase) in self.phases.iter().enumerate() {
            let end = self.phases.get(i + 1).map_or(Duration::MAX, |p| p.from);
            let lo = phase.from.max(from);
            let hi = end.min(to);
            if hi > lo {
                let n = phase.rate * (hi - lo).as_secs_f64();
                all += n;
                slow += n * phase.slow;
            }
        }
        (all, slow)
    }

    /// Pod `pod`'s exposition at `t` since the start, or `None` while it is down.
    pub fn exposition(&self, pod: usize, t: Duration) -> Option<String> {
        let mut process_start = Duration::ZERO;
        if let Some(r) = self.restart.filter(|r| r.pod == pod && t >= r.at) {
            if t < r.at + r.down {
                return None;
            }
            process_start = r.at + r.down;
        }
        let (all, slow) = self.served(process_start, t);
        let fast = all - slow;
        let mut text = String::new();
        text.push_str("# HELP http_requests_total Requests served.\n");
        text.push_str("# TYPE http_requests_total counter\n");
        let _ = writeln!(text, "http_requests_total{{code=\"200\"}} {all}");
        text.push_str("# HELP http_request_duration_seconds Request latency.\n");
        text.push_str("# TYPE http_request_duration_seconds histogram\n");
        for le in BUCKETS {
            let count = if le >= SLOW_SECONDS { all } else { fast };
            let _ = writeln!(
                text,
                "http_request_duration_seconds_bucket{{le=\"{le}\"}} {count}"
            );
        }
        let _ = writeln!(
            text,
            "http_request_duration_seconds_bucket{{le=\"+Inf\"}} {all}"
        );
        let sum = fast * FAST_SECONDS + slow * SLOW_SECONDS;
        let _ = writeln!(text, "http_request_duration_seconds_sum {sum}");
        let _ = writeln!(text, "http_request_duration_seconds_count {all}");
        Some(text)
    }
}

/// Running pods, one loopback port each.
pub struct Pods {
    pub addrs: Vec<SocketAddr>,
    pub started: Instant,
    servers: Vec<tokio::task::JoinHandle<()>>,
}

impl Pods {
    /// Starts `count` pods following `traffic` from now.
    pub async fn start(count: usize, traffic: Traffic) -> Pods {
        let started = Instant::now();
        let traffic = Arc::new(traffic);
        let mut addrs = Vec::new();
        let mut servers = Vec::new();
        for pod in 0..count {
            let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind pod");
            addrs.push(listener.local_addr().expect("pod address"));
            let traffic = traffic.clone();
            servers.push(tokio::spawn(async move {
                loop {
                    let Ok((stream, _)) = listener.accept().await else {
                        return;
                    };
                    let traffic = traffic.clone();
                    tokio::spawn(async move {
                        let service = service_fn(move |_req| {
                            let body = traffic.exposition(pod, started.elapsed());
                            async move {
                                Ok::<_, Infallible>(match body {
                                    Some(text) => Response::builder()
                                        .header("Content-Type", "text/plain; version=0.0.4")
                                        .body(Full::new(Bytes::from(text)))
                                        .expect("response"),
                                    None => Response::builder()
                                        .status(StatusCode::SERVICE_UNAVAILABLE)
                                        .body(Full::new(Bytes::from_static(b"restarting\n")))
                                        .expect("response"),
                                })
                            }
                        });
                        let _ = hyper::server::conn::http1::Builder::new()
                            .serve_connection(TokioIo::new(stream), service)
                            .await;
                    });
                }
            }));
        }
        Pods {
            addrs,
            started,
            servers,
        }
    }
}

impl Drop for Pods {
    fn drop(&mut self) {
        for s in &self.servers {
            s.abort();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn value(text: &str, series: &str) -> f64 {
        text.lines()
            .find_map(|l| l.strip_prefix(series)?.trim().parse().ok())
            .unwrap_or_else(|| panic!("{series} in\n{text}"))
    }

    #[test]
    fn counters_follow_the_schedule_and_restart_from_zero() {
        let s = Duration::from_secs;
        let traffic = Traffic {
            phases: vec![
                Phase {
                    from: s(0),
                    rate: 5.0,
                    slow: 0.0,
                },
                Phase {
                    from: s(10),
                    rate: 20.0,
                    slow: 0.1,
                },
            ],
            restart: Some(Restart {
                pod: 1,
                at: s(20),
                down: s(2),
            }),
        };
        let a = traffic.exposition(0, s(30)).expect("up");
        assert_eq!(value(&a, "http_requests_total{code=\"200\"}"), 450.0);
        assert_eq!(
            value(&a, "http_request_duration_seconds_bucket{le=\"0.5\"}"),
            450.0 - 40.0
        );
        assert_eq!(
            value(&a, "http_request_duration_seconds_bucket{le=\"1\"}"),
            450.0
        );
        assert!(traffic.exposition(1, s(21)).is_none());
        let b = traffic.exposition(1, s(30)).expect("up again");
        assert_eq!(value(&b, "http_requests_total{code=\"200\"}"), 160.0);
    }
}
