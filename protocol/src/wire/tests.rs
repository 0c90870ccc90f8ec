//! Round trips of the wire messages at their limits.

use super::*;

#[test]
fn blob_header_round_trips() {
    for header in [
        BlobHeader::Found { size: 1 << 40 },
        BlobHeader::NotFound,
        BlobHeader::Busy,
        BlobHeader::BadRange,
        BlobHeader::FoundZstd { size: 3 },
    ] {
        assert_eq!(BlobHeader::decode(&header.encode()), Ok(header));
    }
    assert!(BlobHeader::decode(&[9; 9]).is_err());
    // Found by fuzzing: a second encoding of `NotFound`.
    assert!(BlobHeader::decode(&[1, 0, 0x20, 0x10, 0, 0, 0, 0, 0]).is_err());
}

#[test]
fn the_largest_sync_response_of_the_smallest_manifests_decodes() {
    // Many small elements are where a container's in-memory size is largest next to its
    // encoding: the decoder's claim limit must still let this through.
    let keys = crate::Keypair::from_seed([3; 32]);
    let manifests = (0..MAX_SYNC_MANIFESTS as u64)
        .map(|version| {
            crate::Manifest {
                name: "e".into(),
                version,
                blob: ContentHash::of(b""),
                size: 0,
                abi: crate::Abi::Raw,
                limits: crate::Limits::default(),
                publisher: keys.public(),
                issued_at_ms: 0,
            }
            .sign(&keys)
        })
        .collect();
    let response = SyncResponse {
        manifests,
        membership: Vec::new(),
        more: false,
        peers: Vec::new(),
    };
    assert_eq!(SyncResponse::decode(&response.encode()), Ok(response));
}

#[test]
fn the_largest_invoke_request_decodes() {
    let request = InvokeRequest {
        hash: ContentHash::of(b""),
        input: vec![1; crate::Limits::MAX_BODY as usize],
        deadline_ms: 1,
        hops: 0,
        trace_id: 0,
        trace: Some(TraceContext {
            trace_id: [7; 16],
            span_id: [9; 8],
            sampled: true,
        }),
        nonce: u64::MAX,
    };
    assert_eq!(InvokeRequest::decode(&request.encode()), Ok(request));
}
