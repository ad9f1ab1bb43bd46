//! Encodes a call and its response with weft-proto and decodes both again,
//! printing the bytes a Service Weaver peer would see.

use bytes::Bytes;
use weft_proto::{DEFAULT_FLATTEN_LIMIT, Transmit};
use weft_proto::{DEFAULT_MAX_PAYLOAD, FrameDecoder};
use weft_proto::{Message, Metadata, MethodKey, RemoteError, RequestHeader, Version};

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut header = RequestHeader::new(MethodKey::new("weft.Test", "Echo"));
    header.deadline_micros = 1_500_000;
    header.metadata = Some(Metadata::from_iter([("tenant", "acme")]));

    let mut tx = Transmit::new(DEFAULT_FLATTEN_LIMIT);
    tx.push_version(Version::CURRENT);
    tx.push_request(1, header.fields(), &Bytes::from_static(b"hello"));
    tx.push_response(1, &Bytes::from_static(b"hello"));
    tx.push_error(2, &RemoteError::new("boom"));
    let mut wire = Vec::new();
    tx.drain_into(&mut wire);
    println!("{} bytes on the wire: {}", wire.len(), hex(&wire));

    let mut dec = FrameDecoder::new(DEFAULT_MAX_PAYLOAD);
    dec.extend_from_slice(&wire);
    while let Some(frame) = dec.decode()? {
        match Message::parse(frame)? {
            Message::ErrorResponse { id, payload } => {
                println!("error response {id}: {}", RemoteError::decode(&payload)?)
            }
            m => println!("{m:?}"),
        }
    }
    Ok(())
}
