//! The Rust client against a real server in-process: an epoch read through
//! every partition is exactly the cohort, resumes are suffixes, errors come
//! back with their codes, and a Unix socket serves the same stream.

use crate::common;

use std::collections::BTreeSet;

use arrow_array::cast::AsArray;
use arrow_array::types::UInt64Type;
use cellflight_client::{Client, ClientError, EpochPlan, Minibatch};
use cellflight_flight::{Server, ServiceConfig};
use cellflight_schemas::{StreamRequest, StreamTicket};
use cellflight_store::Dataset;
use common::{dataset, TestServer};
use futures::TryStreamExt;

fn request(json: &str) -> StreamRequest {
    StreamRequest::from_json(json.as_bytes()).unwrap()
}

async fn read(client: &mut Client, plan: &EpochPlan, ticket: &StreamTicket) -> Vec<Minibatch> {
    client
        .stream(ticket, plan.batches_per_partition)
        .await
        .unwrap()
        .try_collect()
        .await
        .unwrap()
}

/// (cell id, is_padding) of every row.
fn rows(minibatches: &[Minibatch]) -> Vec<(u64, bool)> {
    minibatches
        .iter()
        .flat_map(|m| {
            let ids = m.data.column(0).as_primitive::<UInt64Type>().clone();
            let padding = m
                .data
                .column_by_name("is_padding")
                .unwrap()
                .as_boolean()
                .clone();
            (0..ids.len()).map(move |i| (ids.value(i), padding.value(i)))
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn an_epoch_over_every_partition_holds_each_cohort_cell_once() {
    let root = tempfile::tempdir().unwrap();
    let dir = dataset(root.path(), "cells", 2000);
    let server = TestServer::start(&dir).await;
    let mut client = Client::connect(&server.address).await.unwrap();
    let plan = client
        .plan(&request(
            r#"{"query": "stat_n_genes > 20", "partitions": 3, "batch_size": 50, "seed": 4}"#,
        ))
        .await
        .unwrap();
    let mut real = Vec::new();
    for (partition, ticket) in plan.tickets.iter().enumerate() {
        let minibatches = read(&mut client, &plan, ticket).await;
        assert_eq!(minibatches.len() as u64, plan.batches_per_partition);
        for (k, m) in minibatches.iter().enumerate() {
            assert_eq!((m.partition, m.batch), (partition as u32, k as u64));
        }
        real.extend(rows(&minibatches).into_iter().filter(|r| !r.1).map(|r| r.0));
    }
    let dataset = Dataset::open(&dir).unwrap();
    let stats = dataset
        .column(cellflight_store::Table::Cells, "stat_n_genes")
        .unwrap()
        .1;
    let stats = stats.as_primitive::<arrow_array::types::UInt32Type>();
    let expected: Vec<u64> = (0..stats.len() as u64)
        .filter(|&i| stats.value(i as usize) > 20)
        .collect();
    assert_eq!(real.len(), expected.len(), "no cell twice");
    assert_eq!(
        real.into_iter().collect::<BTreeSet<_>>(),
        expected.into_iter().collect()
    );
    assert_eq!(
        plan.cohort_size as usize,
        stats.iter().filter(|n| n.unwrap() > 20).count()
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_resumed_partition_is_the_suffix_of_the_full_one() {
    let root = tempfile::tempdir().unwrap();
    let server = TestServer::start(&dataset(root.path(), "cells", 900)).await;
    let mut client = Client::connect(&server.address).await.unwrap();
    let plan = client
        .plan(&request(
            r#"{"batch_size": 16, "fetch_factor": 4, "seed": 1}"#,
        ))
        .await
        .unwrap();
    let full = rows(&read(&mut client, &plan, &plan.tickets[0]).await);
    let resumed = StreamTicket {
        start_batch: 13,
        ..plan.tickets[0].clone()
    };
    assert_eq!(
        rows(&read(&mut client, &plan, &resumed).await),
        full[13 * 16..]
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn refusals_carry_the_servers_code_and_message() {
    let root = tempfile::tempdir().unwrap();
    let server = TestServer::start(&dataset(root.path(), "cells", 100)).await;
    let mut client = Client::connect(&server.address).await.unwrap();
    let refusal = client
        .plan(&request(r#"{"query": "no_such_column = 1"}"#))
        .await;
    let Err(ClientError::Status(status)) = refusal else {
        panic!("expected a refusal, got {refusal:?}")
    };
    assert_eq!(status.code(), tonic::Code::InvalidArgument);
    assert!(status.message().contains("no_such_column"), "{status}");
    let refusal = client.plan(&request(r#"{"dataset": "nope"}"#)).await;
    assert!(matches!(refusal, Err(ClientError::Status(s)) if s.code() == tonic::Code::NotFound));
    assert!(matches!(
        Client::connect("http://localhost:1").await,
        Err(ClientError::Address { .. })
    ));
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_unix_socket_serves_the_same_stream() {
    let root = tempfile::tempdir().unwrap();
    let dir = dataset(root.path(), "cells", 300);
    let socket = root.path().join("cf.sock");
    let server = TestServer::start(&dir).await;
    let listener = tokio::net::UnixListener::bind(&socket).unwrap();
    let unix_server = Server::new(&ServiceConfig::new(&dir)).unwrap();
    let unix = tokio::spawn(
        unix_server
            .unix_router()
            .await
            .unwrap()
            .serve_with_incoming(tokio_stream::wrappers::UnixListenerStream::new(listener)),
    );
    let request = request(r#"{"batch_size": 32, "seed": 2}"#);
    let mut tcp = Client::connect(&server.address).await.unwrap();
    let mut local = Client::connect(&format!("grpc+unix://{}", socket.display()))
        .await
        .unwrap();
    let plan = local.plan(&request).await.unwrap();
    assert_eq!(
        rows(&read(&mut local, &plan, &plan.tickets[0]).await),
        rows(&read(&mut tcp, &plan, &plan.tickets[0]).await)
    );
    unix.abort();
    server.stop().await;
}
