//! A stream whose client stops reading: the server frees its slot after the
//! idle timeout and ends it with ABORTED; the Rust client resumes it from
//! the next batch by itself, so the partition still arrives exactly once.

use std::time::Duration;

use arrow_flight::flight_service_client::FlightServiceClient;
use arrow_flight::Ticket;
use cellflight_client::{Client, EpochPlan};
use cellflight_flight::ServiceConfig;
use cellflight_generate::{generate, GenerateOptions};
use cellflight_schemas::StreamRequest;
use futures::{StreamExt, TryStreamExt};

use crate::common::TestServer;

const IDLE_TIMEOUT: Duration = Duration::from_millis(500);
/// Longer than the idle timeout: a trainer validating or checkpointing.
const PAUSE: Duration = Duration::from_secs(2);

const REQUEST: &str = r#"{"format": "dense", "batch_size": 250, "sampling": "sequential"}"#;

/// A server whose streams are reclaimed after `IDLE_TIMEOUT`, over a
/// dataset whose dense partition (12,000 × 2,000 × 4 bytes, 96 MB) cannot
/// hide in the transport's buffers while its client pauses; a client, and
/// its plan of `REQUEST`.
async fn impatient_server(root: &std::path::Path) -> (TestServer, Client, EpochPlan) {
    let mut options = GenerateOptions::new(root.join("wide"), 12_000);
    options.genes = 2_000;
    options.seed = 5;
    generate(&options, &|_| {}).unwrap();
    let mut config = ServiceConfig::new(root);
    config.streams.idle_timeout = IDLE_TIMEOUT;
    let server = TestServer::start_with(&config).await;
    let mut client = Client::connect(&server.address).await.unwrap();
    let plan = client
        .plan(&StreamRequest::from_json(REQUEST.as_bytes()).unwrap())
        .await
        .unwrap();
    (server, client, plan)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_stream_left_unread_ends_aborted_saying_how_to_resume() {
    let root = tempfile::tempdir().unwrap();
    let (server, _client, plan) = impatient_server(root.path()).await;
    let mut raw = FlightServiceClient::new(server.channel().await);
    let ticket = Ticket::new(plan.tickets[0].to_json());
    let mut messages = raw.do_get(ticket).await.unwrap().into_inner();
    assert!(messages.next().await.unwrap().is_ok());
    tokio::time::sleep(PAUSE).await;
    let ended = messages.try_collect::<Vec<_>>().await.unwrap_err();
    assert_eq!(ended.code(), tonic::Code::Aborted, "{ended}");
    assert!(ended.message().contains("--stream-idle-timeout"), "{ended}");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_client_resumes_an_aborted_stream_and_delivers_each_batch_once() {
    let root = tempfile::tempdir().unwrap();
    let (_server, mut client, plan) = impatient_server(root.path()).await;
    let mut stream = client
        .stream(&plan.tickets[0], plan.batches_per_partition)
        .await
        .unwrap();
    let mut batches = vec![stream.try_next().await.unwrap().unwrap().batch];
    tokio::time::sleep(PAUSE).await;
    while let Some(minibatch) = stream.try_next().await.unwrap() {
        batches.push(minibatch.batch);
    }
    let every_batch: Vec<u64> = (0..plan.batches_per_partition).collect();
    assert_eq!(batches, every_batch);
}
