use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Duration;

use arrow_array::RecordBatch;
use arrow_flight::decode::{DecodedPayload, FlightDataDecoder};
use arrow_flight::flight_service_client::FlightServiceClient;
use arrow_flight::{FlightDescriptor, FlightInfo, Ticket};
use arrow_schema::SchemaRef;
use cellflight_schemas::{BatchPosition, PlanMetadata, StreamRequest, StreamTicket};
use futures::stream::BoxStream;
use futures::{StreamExt, TryStreamExt};
use hyper_util::rt::TokioIo;
use tonic::metadata::{Ascii, MetadataValue};
use tonic::service::interceptor::InterceptedService;
use tonic::service::Interceptor;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity, Uri};

use crate::failover::Locations;
use crate::ClientError;

/// Largest message the client accepts: a minibatch is never split, and the
/// server refuses requests whose minibatches could exceed 64 MiB (tonic's
/// default limit is 4 MiB).
pub const MAX_MESSAGE_BYTES: usize = 80 << 20;

/// How long a server may leave a connection silent (HTTP/2 pings
/// unanswered, e.g. a hung replica) before the client gives up on it, when
/// [`ConnectOptions::failover_timeout`] does not say.
pub const DEFAULT_FAILOVER_TIMEOUT: Duration = Duration::from_secs(20);

/// A connection to a cellflight server.
#[derive(Debug, Clone)]
pub struct Client {
    flight: FlightServiceClient<InterceptedService<Channel, BearerToken>>,
    /// Where it connects, and how: the same options reach the replicas an
    /// endpoint lists.
    address: String,
    options: ConnectOptions,
}

/// How to reach a server that wants a key or speaks TLS.
#[derive(Debug, Clone, Default)]
pub struct ConnectOptions {
    /// The bearer token sent with every call.
    pub token: Option<String>,
    /// For grpc+tls://: the PEM CA certificate that signed the server's
    /// (default: the system's CAs).
    pub ca_certificate: Option<Vec<u8>>,
    /// For mutual TLS: this client's PEM certificate and key.
    pub client_identity: Option<(Vec<u8>, Vec<u8>)>,
    /// How long a server may stay silent before the client gives up on it
    /// and a stream goes on at the endpoint's next replica; none:
    /// [`DEFAULT_FAILOVER_TIMEOUT`].
    pub failover_timeout: Option<Duration>,
}

/// Adds `authorization: Bearer TOKEN` to every call, if there is a token.
#[derive(Debug, Clone)]
pub struct BearerToken(Option<MetadataValue<Ascii>>);

impl Interceptor for BearerToken {
    fn call(
        &mut self,
        mut request: tonic::Request<()>,
    ) -> Result<tonic::Request<()>, tonic::Status> {
        if let Some(value) = &self.0 {
            request
                .metadata_mut()
                .insert("authorization", value.clone());
        }
        Ok(request)
    }
}

/// An epoch as planned by `GetFlightInfo`: one ticket a partition.
#[derive(Debug, Clone)]
pub struct EpochPlan {
    pub tickets: Vec<StreamTicket>,
    /// Each partition's replicas, in the order to try them (the endpoint's
    /// locations); empty: the server the client planned with.
    pub locations: Vec<Vec<String>>,
    pub schema: SchemaRef,
    /// Cells streamed in the epoch, padding included.
    pub total_records: u64,
    pub cohort_size: u64,
    pub batches_per_partition: u64,
    pub dataset_version: String,
}

/// A partition's minibatches, in order.
pub type MinibatchStream = BoxStream<'static, Result<Minibatch, ClientError>>;

/// One minibatch and where it sits in its partition's stream.
#[derive(Debug, Clone)]
pub struct Minibatch {
    pub partition: u32,
    /// The batch's index; resume after it with `start_batch = batch + 1`.
    pub batch: u64,
    pub data: RecordBatch,
}

impl Client {
    /// Connects to `grpc://host:port` or `grpc+unix:///path/to/socket`.
    pub async fn connect(address: &str) -> Result<Self, ClientError> {
        Self::connect_with(address, &ConnectOptions::default()).await
    }

    /// Connects to `grpc://host:port`, `grpc+tls://host:port` or
    /// `grpc+unix:///path/to/socket`, with `options`.
    pub async fn connect_with(
        address: &str,
        options: &ConnectOptions,
    ) -> Result<Self, ClientError> {
        let bad_address = |reason: String| ClientError::Address {
            address: address.into(),
            reason,
        };
        let failover_timeout = options.failover_timeout.unwrap_or(DEFAULT_FAILOVER_TIMEOUT);
        let tuned = |endpoint| tuned(endpoint, failover_timeout);
        let token = options
            .token
            .as_ref()
            .map(|token| format!("Bearer {token}").parse())
            .transpose()
            .map_err(|_| ClientError::Token)?;
        let channel = if let Some(path) = address.strip_prefix("grpc+unix://") {
            let path = PathBuf::from(path);
            // The URI is unused by the connector; it only names the authority.
            tuned(Endpoint::from_static("http://localhost"))
                .connect_with_connector(tower::service_fn(move |_: Uri| {
                    let path = path.clone();
                    async move {
                        tokio::net::UnixStream::connect(path)
                            .await
                            .map(TokioIo::new)
                    }
                }))
                .await
        } else if let Some(host) = address.strip_prefix("grpc://") {
            let endpoint = Endpoint::from_shared(format!("http://{host}"))
                .map_err(|e| bad_address(e.to_string()))?;
            tuned(endpoint).connect().await
        } else if let Some(host) = address.strip_prefix("grpc+tls://") {
            let endpoint = Endpoint::from_shared(format!("https://{host}"))
                .map_err(|e| bad_address(e.to_string()))?
                .tls_config(tls_config(options))
                .map_err(|e| bad_address(e.to_string()))?;
            tuned(endpoint).connect().await
        } else {
            return Err(bad_address(
                "expected grpc://host:port, grpc+tls://host:port or grpc+unix:///path".into(),
            ));
        };
        let channel = channel.map_err(|source| ClientError::Connect {
            address: address.into(),
            source,
        })?;
        let flight = FlightServiceClient::with_interceptor(channel, BearerToken(token))
            .max_decoding_message_size(MAX_MESSAGE_BYTES)
            .max_encoding_message_size(MAX_MESSAGE_BYTES);
        Ok(Self {
            flight,
            address: address.into(),
            options: options.clone(),
        })
    }

    /// Plans an epoch of `request`.
    pub async fn plan(&mut self, request: &StreamRequest) -> Result<EpochPlan, ClientError> {
        let descriptor = FlightDescriptor::new_cmd(request.to_json());
        let info = self.flight.get_flight_info(descriptor).await?.into_inner();
        epoch_plan(info)
    }

    /// The minibatches of the partition `ticket` names, read from this
    /// client's server: [`Client::stream_from`] without locations.
    pub async fn stream(
        &mut self,
        ticket: &StreamTicket,
        batches_per_partition: u64,
    ) -> Result<MinibatchStream, ClientError> {
        self.stream_from(ticket, &[], batches_per_partition).await
    }

    /// The minibatches of the partition `ticket` names, from its
    /// `start_batch` on, to the last of the plan's `batches_per_partition`,
    /// read from the first of `locations` (its endpoint's replicas; none:
    /// this client's server). A stream that skips a batch or ends before
    /// its last one yields an error ([`ClientError::IncompleteStream`]),
    /// never a quiet end. A stream that fails over (a replica down or
    /// silent, or a stream the server aborted, e.g. left unread past its
    /// idle timeout while the caller paused) is requested again from the
    /// next batch at the next location and goes on as if nothing happened,
    /// within one round of the locations (docs/protocol.md, "Replicas").
    pub async fn stream_from(
        &mut self,
        ticket: &StreamTicket,
        locations: &[String],
        batches_per_partition: u64,
    ) -> Result<MinibatchStream, ClientError> {
        let expected = ExpectedBatches {
            partition: ticket.partition,
            next: ticket.start_batch,
            end: batches_per_partition,
        };
        let resuming = Resuming::start(self, ticket, locations).await?;
        Ok(expected.check(resuming.into_stream()))
    }

    /// The minibatches of `ticket`'s partition from `start_batch`, unchecked.
    async fn minibatches_from(
        &mut self,
        ticket: &StreamTicket,
        start_batch: u64,
    ) -> Result<MinibatchStream, ClientError> {
        let ticket = StreamTicket {
            start_batch,
            ..ticket.clone()
        };
        let messages = self
            .flight
            .do_get(Ticket::new(ticket.to_json()))
            .await?
            .into_inner();
        let decoder = FlightDataDecoder::new(messages.map_err(Into::into));
        let minibatches = decoder.filter_map(|message| async move {
            match message {
                Err(error) => Some(Err(ClientError::from(error))),
                Ok(decoded) => match decoded.payload {
                    DecodedPayload::RecordBatch(data) => {
                        Some(minibatch(&decoded.inner.app_metadata, data))
                    }
                    DecodedPayload::Schema(_) | DecodedPayload::None => None,
                },
            }
        });
        Ok(minibatches.boxed())
    }
}

/// A partition's minibatches across failures: each one that fails over is
/// answered by a request from the next batch at the next location, with a
/// connection kept per location.
struct Resuming {
    connections: HashMap<String, Client>,
    options: ConnectOptions,
    locations: Locations,
    ticket: StreamTicket,
    current: MinibatchStream,
    next: u64,
}

impl Resuming {
    /// Reading `ticket`'s partition from the first of `locations` that answers.
    async fn start(
        client: &Client,
        ticket: &StreamTicket,
        locations: &[String],
    ) -> Result<Self, ClientError> {
        let locations = match locations {
            [] => vec![client.address.clone()],
            given => given.to_vec(),
        };
        let mut resuming = Self {
            connections: HashMap::from([(client.address.clone(), client.clone())]),
            options: client.options.clone(),
            locations: Locations::new(locations),
            ticket: ticket.clone(),
            current: futures::stream::empty().boxed(),
            next: ticket.start_batch,
        };
        match resuming.open_current().await {
            Ok(first) => resuming.current = first,
            Err(error) if error.fails_over() => resuming.fail_over(error).await?,
            Err(error) => return Err(error),
        }
        Ok(resuming)
    }

    fn into_stream(self) -> MinibatchStream {
        futures::stream::unfold(self, |mut state| async move {
            let item = state.next_minibatch().await?;
            Some((item, state))
        })
        .boxed()
    }

    async fn next_minibatch(&mut self) -> Option<Result<Minibatch, ClientError>> {
        loop {
            match self.current.next().await? {
                Ok(minibatch) => {
                    self.next = minibatch.batch + 1;
                    return Some(Ok(minibatch));
                }
                Err(error) if error.fails_over() => {
                    if let Err(error) = self.fail_over(error).await {
                        return Some(Err(error));
                    }
                }
                Err(error) => return Some(Err(error)),
            }
        }
    }

    /// Moves on to the next location that answers, after `error` at the
    /// current one; the round's error when none does.
    async fn fail_over(&mut self, mut error: ClientError) -> Result<(), ClientError> {
        loop {
            self.locations
                .fail(&error, self.ticket.partition, self.next)?;
            match self.open_current().await {
                Ok(resumed) => {
                    self.current = resumed;
                    return Ok(());
                }
                Err(failed) if failed.fails_over() => error = failed,
                Err(failed) => return Err(failed),
            }
        }
    }

    /// The partition from the next batch at the current location.
    async fn open_current(&mut self) -> Result<MinibatchStream, ClientError> {
        let location = self.locations.current();
        let mut client = match self.connections.get(location) {
            Some(client) => client.clone(),
            None => {
                let client = Client::connect_with(location, &self.options).await?;
                self.connections.insert(location.to_owned(), client.clone());
                client
            }
        };
        client.minibatches_from(&self.ticket, self.next).await
    }
}

/// The batches a partition's stream must deliver, in order: a server
/// that fails mid-stream must not pass for one that finished.
#[derive(Debug, Clone, Copy)]
struct ExpectedBatches {
    partition: u32,
    next: u64,
    end: u64,
}

impl ExpectedBatches {
    /// `minibatches`, each checked to be the next expected, then an error
    /// if they stopped before the last.
    fn check(self, minibatches: MinibatchStream) -> MinibatchStream {
        futures::stream::unfold(
            (minibatches, Some(self)),
            |(mut minibatches, expected)| async move {
                let mut expected = expected?;
                let item = match minibatches.next().await {
                    Some(Ok(minibatch)) => expected.take(minibatch),
                    Some(Err(error)) => Err(error),
                    None if expected.next >= expected.end => return None,
                    None => Err(expected.incomplete()),
                };
                let ended = item.is_err();
                Some((item, (minibatches, (!ended).then_some(expected))))
            },
        )
        .boxed()
    }

    fn take(&mut self, minibatch: Minibatch) -> Result<Minibatch, ClientError> {
        if (minibatch.partition, minibatch.batch) != (self.partition, self.next) {
            return Err(ClientError::Protocol(format!(
                "partition {} batch {} arrived where partition {} batch {} was due",
                minibatch.partition, minibatch.batch, self.partition, self.next
            )));
        }
        self.next += 1;
        Ok(minibatch)
    }

    fn incomplete(&self) -> ClientError {
        ClientError::IncompleteStream {
            partition: self.partition,
            next: self.next,
            end: self.end,
        }
    }
}

fn tls_config(options: &ConnectOptions) -> ClientTlsConfig {
    let mut config = match &options.ca_certificate {
        Some(pem) => ClientTlsConfig::new().ca_certificate(Certificate::from_pem(pem)),
        None => ClientTlsConfig::new().with_native_roots(),
    };
    if let Some((cert, key)) = &options.client_identity {
        config = config.identity(Identity::from_pem(cert, key));
    }
    config
}

/// HTTP/2 flow-control windows of a few minibatches: with h2's 64 KiB
/// default, a 400 KiB minibatch waits for several window updates. And
/// keepalive, so that a server silent for `failover_timeout` (a hung
/// replica keeps its socket open) fails the stream with UNAVAILABLE: a
/// ping every half of it, given half of it to be answered, on a quiet
/// connection too.
fn tuned(endpoint: Endpoint, failover_timeout: Duration) -> Endpoint {
    let half = failover_timeout / 2;
    endpoint
        .initial_stream_window_size(STREAM_WINDOW_BYTES)
        .initial_connection_window_size(4 * STREAM_WINDOW_BYTES)
        .http2_keep_alive_interval(half)
        .keep_alive_timeout(half)
        .keep_alive_while_idle(true)
        .connect_timeout(failover_timeout)
}

const STREAM_WINDOW_BYTES: u32 = 16 << 20;

fn epoch_plan(info: FlightInfo) -> Result<EpochPlan, ClientError> {
    let protocol = |what: String| ClientError::Protocol(what);
    let metadata = PlanMetadata::from_json(&info.app_metadata)
        .map_err(|e| protocol(format!("FlightInfo app_metadata: {e}")))?;
    let locations = info
        .endpoint
        .iter()
        .map(|endpoint| endpoint.location.iter().map(|l| l.uri.clone()).collect())
        .collect();
    let tickets = info
        .endpoint
        .iter()
        .map(|endpoint| {
            let ticket = endpoint
                .ticket
                .as_ref()
                .ok_or_else(|| protocol("an endpoint without a ticket".into()))?;
            StreamTicket::from_json(&ticket.ticket)
                .map_err(|e| protocol(format!("a ticket the client cannot read: {e}")))
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(EpochPlan {
        schema: std::sync::Arc::new(
            info.clone()
                .try_decode_schema()
                .map_err(|e| protocol(format!("unreadable schema: {e}")))?,
        ),
        total_records: u64::try_from(info.total_records)
            .map_err(|_| protocol("negative total_records".into()))?,
        cohort_size: metadata.cohort_size,
        batches_per_partition: metadata.batches_per_partition,
        dataset_version: metadata.dataset_version,
        tickets,
        locations,
    })
}

fn minibatch(app_metadata: &[u8], data: RecordBatch) -> Result<Minibatch, ClientError> {
    let BatchPosition { partition, batch } = BatchPosition::from_json(app_metadata)
        .map_err(|e| ClientError::Protocol(format!("a minibatch's app_metadata: {e}")))?;
    Ok(Minibatch {
        partition,
        batch,
        data,
    })
}

#[cfg(test)]
mod tests {
    use arrow_schema::Schema;

    use super::*;

    #[test]
    fn a_minibatch_is_placed_by_its_app_metadata() {
        let data = RecordBatch::new_empty(std::sync::Arc::new(Schema::empty()));
        let minibatch = minibatch(br#"{"partition":1,"batch":5}"#, data).unwrap();
        assert_eq!((minibatch.partition, minibatch.batch), (1, 5));
    }

    #[test]
    fn app_metadata_without_a_key_is_a_protocol_violation_naming_it() {
        let data = RecordBatch::new_empty(std::sync::Arc::new(Schema::empty()));
        let error = minibatch(br#"{"partition":1}"#, data).unwrap_err();
        assert!(
            matches!(&error, ClientError::Protocol(m) if m.starts_with("a minibatch's app_metadata: invalid minibatch position") && m.contains("`batch`")),
            "{error}"
        );
        let info = FlightInfo::new().with_app_metadata(r#"{"cohort_size":3}"#);
        let error = epoch_plan(info).unwrap_err();
        assert!(
            matches!(&error, ClientError::Protocol(m) if m.starts_with("FlightInfo app_metadata: invalid plan metadata") && m.contains("`batches_per_partition`")),
            "{error}"
        );
    }

    fn minibatches(batches: &[u64]) -> MinibatchStream {
        let data = RecordBatch::new_empty(std::sync::Arc::new(Schema::empty()));
        let items: Vec<_> = batches
            .iter()
            .map(|&batch| {
                Ok(Minibatch {
                    partition: 2,
                    batch,
                    data: data.clone(),
                })
            })
            .collect();
        futures::stream::iter(items).boxed()
    }

    async fn checked(batches: &[u64], start: u64, end: u64) -> Vec<Result<u64, ClientError>> {
        let expected = ExpectedBatches {
            partition: 2,
            next: start,
            end,
        };
        expected
            .check(minibatches(batches))
            .map(|minibatch| minibatch.map(|m| m.batch))
            .collect()
            .await
    }

    #[tokio::test]
    async fn a_stream_that_reaches_its_last_batch_ends_quietly() {
        let batches = checked(&[3, 4, 5], 3, 6).await;
        assert_eq!(
            batches.into_iter().map(Result::unwrap).collect::<Vec<_>>(),
            [3, 4, 5]
        );
    }

    #[tokio::test]
    async fn a_stream_that_ends_early_ends_with_an_error_saying_where_to_resume() {
        let batches = checked(&[0, 1], 0, 4).await;
        assert_eq!(batches.len(), 3);
        let error = batches[2].as_ref().unwrap_err();
        assert!(
            matches!(
                error,
                ClientError::IncompleteStream {
                    partition: 2,
                    next: 2,
                    end: 4
                }
            ),
            "{error}"
        );
        assert!(error.to_string().contains("resume from start_batch 2"));
    }

    #[tokio::test]
    async fn a_skipped_batch_is_a_protocol_violation_and_ends_the_stream() {
        let batches = checked(&[0, 2, 3], 0, 4).await;
        assert_eq!(batches.len(), 2, "nothing after the violation");
        let error = batches[1].as_ref().unwrap_err();
        assert!(
            matches!(error, ClientError::Protocol(m) if m.contains("batch 2 arrived where partition 2 batch 1 was due")),
            "{error}"
        );
    }
}
