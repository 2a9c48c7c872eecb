//! sfsim's throughput benchmark (run by `scripts/bench.sh`): preload N retained report
//! events, then drain them with one Subscribe client from EARLIEST, keeping 100 pending
//! as a real client would. Prints the figures; BENCHMARKS.md records them.

use std::time::{Duration, Instant};

use sfwire::eventbus::v1::pub_sub_client::PubSubClient;
use sfwire::eventbus::v1::{FetchRequest, ReplayPreset};
use tokio::sync::mpsc;
use tokio_stream::StreamExt;
use tokio_stream::wrappers::ReceiverStream;
use tonic::metadata::MetadataValue;
use tonic::transport::Channel;

fn peak_rss_mb() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| s.lines().find(|l| l.starts_with("VmHWM:")).map(str::to_owned))
        .and_then(|l| l.split_whitespace().nth(1).and_then(|kb| kb.parse::<f64>().ok()))
        .map_or(0.0, |kb| kb / 1024.0)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let count: usize = std::env::args().nth(1).map(|a| a.parse()).transpose()?.unwrap_or(1_000_000);
    let config = sfsim::Config { users: 500, ..sfsim::Config::default() };
    let running = sfsim::start(config).await?;
    let sim = running.sim.clone();
    // Benchmarks measure the stream: the stored big object is not needed here.
    sim.org().settings.set(sfsim::org::EventType::Report, None, Some(false));

    let started = Instant::now();
    let published = tokio::task::spawn_blocking(move || sfsim::activity::preload(&sim, count, 3_600_000, 1)).await?;
    let preload = started.elapsed();
    println!(
        "preload: {published} events in {:.2} s ({:.0} events/s)",
        preload.as_secs_f64(),
        published as f64 / preload.as_secs_f64()
    );

    // A token the ordinary way: the service account's session, issued directly.
    let (user, client_id) = {
        let org = running.sim.org();
        (org.service_user.clone(), org.app.client_id.clone())
    };
    let token = running.sim.sessions().issue_access(&user, &client_id, None, sfsim::now_ms());
    let org_id = running.sim.org().id.to_string();
    let channel = Channel::from_shared(format!("http://{}", running.grpc_addr))?.connect().await?;
    let mut client = PubSubClient::new(channel).max_decoding_message_size(64 * 1024 * 1024);
    let (tx, rx) = mpsc::channel(64);
    tx.send(FetchRequest {
        topic_name: sfwire::pubsub::REPORT_TOPIC.into(),
        replay_preset: ReplayPreset::Earliest as i32,
        num_requested: 100,
        ..Default::default()
    })
    .await?;
    let mut request = tonic::Request::new(ReceiverStream::new(rx));
    request.metadata_mut().insert("accesstoken", MetadataValue::try_from(token.as_str())?);
    request.metadata_mut().insert("instanceurl", MetadataValue::try_from(running.base_url())?);
    request.metadata_mut().insert("tenantid", MetadataValue::try_from(org_id.as_str())?);
    let started = Instant::now();
    let mut stream = client.subscribe(request).await?.into_inner();
    let mut received = 0usize;
    let mut bytes = 0usize;
    while received < published {
        let response = tokio::time::timeout(Duration::from_secs(30), stream.next())
            .await?
            .ok_or_else(|| anyhow::anyhow!("stream ended after {received} events"))??;
        let n = response.events.len();
        received += n;
        bytes += response.events.iter().map(|e| e.event.as_ref().map_or(0, |p| p.payload.len())).sum::<usize>();
        if n > 0 {
            tx.send(FetchRequest { num_requested: n as i32, ..Default::default() }).await?;
        }
    }
    let drain = started.elapsed();
    println!(
        "subscribe: {received} events in {:.2} s ({:.0} events/s, {:.1} MB of Avro payload)",
        drain.as_secs_f64(),
        received as f64 / drain.as_secs_f64(),
        bytes as f64 / 1e6
    );
    println!("peak RSS (sfsim and client, one process): {:.0} MB", peak_rss_mb());
    Ok(())
}
