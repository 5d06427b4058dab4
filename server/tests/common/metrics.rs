//! Scraping the server's `/metrics` port, parsed by a real Prometheus parser.

use std::net::SocketAddr;

use http::Request;
use http_body_util::Full;

use super::binary::Server;
use super::send_http1;

/// The `metrics on ADDR` address from the banner.
pub fn metrics_addr(server: &Server) -> SocketAddr {
    server
        .banner
        .iter()
        .find_map(|line| line.strip_prefix("metrics on "))
        .expect("a 'metrics on' line")
        .parse()
        .unwrap()
}

/// Scrapes `/metrics` and parses it with a Prometheus text parser: (name, labels) → value.
pub async fn scrape(
    addr: SocketAddr,
) -> Vec<(String, std::collections::BTreeMap<String, String>, f64)> {
    let reply = send_http1(
        addr,
        Request::get("/metrics").body(Full::default()).unwrap(),
    )
    .await;
    assert_eq!(reply.status, 200);
    let content_type = reply.headers["content-type"].to_str().unwrap();
    assert!(
        content_type.starts_with("application/openmetrics-text"),
        "{content_type}"
    );
    let text = String::from_utf8(reply.body.to_vec()).unwrap();
    let lines = text.lines().map(|l| Ok(l.to_owned()));
    let scrape = prometheus_parse::Scrape::parse(lines).expect("the Prometheus parser reads it");
    scrape
        .samples
        .into_iter()
        .map(|sample| {
            let value = match sample.value {
                prometheus_parse::Value::Counter(v)
                | prometheus_parse::Value::Gauge(v)
                | prometheus_parse::Value::Untyped(v) => v,
                prometheus_parse::Value::Histogram(buckets) => {
                    buckets.last().map_or(0.0, |b| b.count)
                }
                prometheus_parse::Value::Summary(_) => f64::NAN,
            };
            let labels = sample
                .labels
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect();
            (sample.metric, labels, value)
        })
        .collect()
}

/// The sum of the samples of `name` whose labels include `labels`.
pub fn value(
    samples: &[(String, std::collections::BTreeMap<String, String>, f64)],
    name: &str,
    labels: &[(&str, &str)],
) -> f64 {
    samples
        .iter()
        .filter(|(metric, have, _)| {
            metric == name
                && labels
                    .iter()
                    .all(|(k, v)| have.get(*k).map(String::as_str) == Some(*v))
        })
        .map(|(_, _, value)| value)
        .sum()
}
