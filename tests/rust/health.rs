//! The standard gRPC health service (grpc.health.v1) answers for the server
//! as a whole and for its Flight service by name, as load balancers and
//! orchestrators ask.

use crate::common;

use common::{dataset, TestServer};
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use tonic_health::pb::HealthCheckRequest;

fn check(service: &str) -> HealthCheckRequest {
    HealthCheckRequest {
        service: service.into(),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_server_and_its_flight_service_report_serving() {
    let root = tempfile::tempdir().unwrap();
    let server = TestServer::start(&dataset(root.path(), "cells", 10)).await;
    let mut health = HealthClient::new(server.channel().await);
    for service in ["", "arrow.flight.protocol.FlightService"] {
        let answer = health.check(check(service)).await.unwrap().into_inner();
        assert_eq!(answer.status, ServingStatus::Serving as i32, "{service:?}");
    }
    let unknown = health.check(check("no.such.Service")).await.unwrap_err();
    assert_eq!(unknown.code(), tonic::Code::NotFound);
    server.stop().await;
}
