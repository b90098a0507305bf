//! One DNS question put to a given name server: the A records of a name,
//! over UDP (RFC 1035). What `--dns-server` needs, where the system's
//! resolver cannot be pointed at another server; answers are read with
//! every length and offset checked, and nothing else is followed.

use std::net::{Ipv4Addr, SocketAddr};

use tokio::net::UdpSocket;

const TYPE_A: u16 = 1;
const CLASS_IN: u16 = 1;
const HEADER_BYTES: usize = 12;
/// The largest answer read: what EDNS recommends, far beyond a headless
/// Service's A records (16 bytes each).
const MAX_ANSWER_BYTES: usize = 1232;
const RCODE_NXDOMAIN: u8 = 3;

/// The IPv4 addresses `name` has at `server`; none for a name that does
/// not exist.
pub(crate) async fn a_records(server: SocketAddr, name: &str) -> Result<Vec<Ipv4Addr>, String> {
    let id = question_id();
    let question = encode_question(id, name)?;
    let bind: SocketAddr = match server {
        SocketAddr::V4(_) => (Ipv4Addr::UNSPECIFIED, 0).into(),
        SocketAddr::V6(_) => (std::net::Ipv6Addr::UNSPECIFIED, 0).into(),
    };
    let socket = UdpSocket::bind(bind).await.map_err(|e| e.to_string())?;
    socket.connect(server).await.map_err(|e| e.to_string())?;
    socket.send(&question).await.map_err(|e| e.to_string())?;
    let mut answer = vec![0; MAX_ANSWER_BYTES];
    loop {
        let read = socket.recv(&mut answer).await.map_err(|e| e.to_string())?;
        // An answer to another question (a late one) is not ours.
        if answer[..read].get(..2) == Some(&id.to_be_bytes()[..]) {
            return decode_answer(&answer[..read]);
        }
    }
}

/// A question id that differs between questions.
fn question_id() -> u16 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    (nanos ^ (nanos >> 16)) as u16
}

fn encode_question(id: u16, name: &str) -> Result<Vec<u8>, String> {
    let name = name.trim_end_matches('.');
    if name.is_empty() || name.len() > 253 {
        return Err(format!("{name:?} is not a DNS name"));
    }
    let mut message = Vec::with_capacity(HEADER_BYTES + name.len() + 6);
    message.extend(id.to_be_bytes());
    message.extend([0x01, 0x00]); // a standard query, recursion desired
    message.extend([0, 1, 0, 0, 0, 0, 0, 0]); // one question
    for label in name.split('.') {
        if label.is_empty() || label.len() > 63 {
            return Err(format!("{name:?} is not a DNS name"));
        }
        message.push(label.len() as u8);
        message.extend(label.as_bytes());
    }
    message.push(0);
    message.extend(TYPE_A.to_be_bytes());
    message.extend(CLASS_IN.to_be_bytes());
    Ok(message)
}

fn decode_answer(message: &[u8]) -> Result<Vec<Ipv4Addr>, String> {
    let short = || "a truncated DNS answer".to_string();
    let header = message.get(..HEADER_BYTES).ok_or_else(short)?;
    let rcode = header[3] & 0x0f;
    if rcode == RCODE_NXDOMAIN {
        return Ok(Vec::new());
    }
    if rcode != 0 {
        return Err(format!("the name server answered with error code {rcode}"));
    }
    let count = |at: usize| u16::from_be_bytes([header[at], header[at + 1]]);
    let (questions, answers) = (count(4), count(6));
    let mut at = HEADER_BYTES;
    for _ in 0..questions {
        at = skip_name(message, at).ok_or_else(short)? + 4;
    }
    let mut addresses = Vec::new();
    for _ in 0..answers {
        at = skip_name(message, at).ok_or_else(short)?;
        let fixed = message.get(at..at + 10).ok_or_else(short)?;
        let kind = u16::from_be_bytes([fixed[0], fixed[1]]);
        let class = u16::from_be_bytes([fixed[2], fixed[3]]);
        let length = usize::from(u16::from_be_bytes([fixed[8], fixed[9]]));
        let data = message.get(at + 10..at + 10 + length).ok_or_else(short)?;
        if let (TYPE_A, CLASS_IN, [a, b, c, d]) = (kind, class, data) {
            addresses.push(Ipv4Addr::new(*a, *b, *c, *d));
        }
        at += 10 + length;
    }
    Ok(addresses)
}

/// Where the name starting at `at` ends: after its zero label, or after a
/// compression pointer (which is not followed: only the end matters).
fn skip_name(message: &[u8], mut at: usize) -> Option<usize> {
    loop {
        let length = *message.get(at)?;
        match length {
            0 => return Some(at + 1),
            l if l & 0xc0 == 0xc0 => return message.get(at + 1).map(|_| at + 2),
            l if l & 0xc0 == 0 => at += 1 + usize::from(l),
            _ => return None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An answer as a name server writes it: the question, then one record
    /// per address, each naming the question by a compression pointer.
    fn answer(id: u16, rcode: u8, addresses: &[[u8; 4]]) -> Vec<u8> {
        let question = encode_question(id, "peers.default.svc").unwrap();
        let mut message = question.clone();
        message[2] = 0x81;
        message[3] = 0x80 | rcode;
        message[6..8].copy_from_slice(&(addresses.len() as u16).to_be_bytes());
        for address in addresses {
            message.extend([0xc0, 12]);
            message.extend(TYPE_A.to_be_bytes());
            message.extend(CLASS_IN.to_be_bytes());
            message.extend(5u32.to_be_bytes());
            message.extend(4u16.to_be_bytes());
            message.extend(address);
        }
        message
    }

    #[test]
    fn a_question_names_the_name_label_by_label() {
        let question = encode_question(7, "peers.default.svc.").unwrap();
        assert_eq!(&question[..2], &[0, 7]);
        assert_eq!(
            &question[HEADER_BYTES..],
            b"\x05peers\x07default\x03svc\x00\x00\x01\x00\x01"
        );
        for bad in ["", "a..b", &"x".repeat(64), &"a.".repeat(130)] {
            assert!(encode_question(1, bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn every_a_record_of_an_answer_is_read() {
        let message = answer(9, 0, &[[10, 0, 0, 1], [10, 0, 0, 2], [10, 0, 0, 3]]);
        let addresses = decode_answer(&message).unwrap();
        assert_eq!(
            addresses,
            vec![
                Ipv4Addr::new(10, 0, 0, 1),
                Ipv4Addr::new(10, 0, 0, 2),
                Ipv4Addr::new(10, 0, 0, 3)
            ]
        );
    }

    #[test]
    fn a_name_that_does_not_exist_has_no_addresses_and_other_errors_say_their_code() {
        assert!(decode_answer(&answer(9, RCODE_NXDOMAIN, &[]))
            .unwrap()
            .is_empty());
        assert!(decode_answer(&answer(9, 2, &[]))
            .unwrap_err()
            .contains("code 2"));
    }

    #[test]
    fn a_truncated_answer_is_an_error_at_every_length() {
        let message = answer(9, 0, &[[10, 0, 0, 1], [10, 0, 0, 2]]);
        for length in 0..message.len() {
            let cut = decode_answer(&message[..length]);
            assert!(
                cut.is_err() || cut.as_ref().is_ok_and(|a| a.len() < 2),
                "{length}: {cut:?}"
            );
        }
    }
}
