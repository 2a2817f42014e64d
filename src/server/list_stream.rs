//! The list-streaming RPCs of CRI 1.37 (`StreamPodSandboxes`, `StreamContainers`,
//! `StreamImages` and the stats and metrics ones): a List call's items sent in
//! messages of about [`CHUNK_BYTES`] each, so that no answer nears gRPC's
//! message limit however many pods or containers the node runs. Each item is
//! in exactly one message, every message holds at least one (an item larger
//! than a chunk goes alone), and an empty list is an empty stream.

use std::pin::Pin;

use tokio_stream::Stream;
use tonic::Status;

/// Far below the 16 MiB kubelet and berth allow per message.
const CHUNK_BYTES: usize = 1 << 20;

/// The answer of a server-streaming RPC.
pub(super) type Responses<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send>>;

/// `items`, in order, as messages `wrap` makes of a chunk each.
pub(super) fn chunked<T: prost::Message, R: Send + 'static>(items: Vec<T>, wrap: impl Fn(Vec<T>) -> R) -> Responses<R> {
    let responses: Vec<Result<R, Status>> = chunks(items, CHUNK_BYTES).into_iter().map(|chunk| Ok(wrap(chunk))).collect();
    Box::pin(tokio_stream::iter(responses))
}

fn chunks<T: prost::Message>(items: Vec<T>, budget: usize) -> Vec<Vec<T>> {
    let mut chunks = Vec::new();
    let mut current = Vec::new();
    let mut size = 0;
    for item in items {
        // Each item costs its length plus a few bytes of tag and length prefix.
        let len = item.encoded_len() + 8;
        if !current.is_empty() && size + len > budget {
            chunks.push(std::mem::take(&mut current));
            size = 0;
        }
        size += len;
        current.push(item);
    }
    if !current.is_empty() {
        chunks.push(current);
    }
    chunks
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cri::v1 as cri;

    fn image(id: &str, tag_bytes: usize) -> cri::Image {
        cri::Image { id: id.into(), repo_tags: vec!["x".repeat(tag_bytes)], ..Default::default() }
    }

    #[test]
    fn every_item_once_in_order_in_chunks_within_the_budget() {
        let items: Vec<cri::Image> = (0..50).map(|i| image(&i.to_string(), 100)).collect();
        let chunks = chunks(items.clone(), 1000);
        assert!(chunks.len() > 1, "{} chunks", chunks.len());
        assert!(chunks.iter().all(|chunk| !chunk.is_empty()));
        assert!(chunks.iter().all(|chunk| chunk.iter().map(|i| prost::Message::encoded_len(i) + 8).sum::<usize>() <= 1000));
        assert_eq!(chunks.concat(), items);
    }

    #[test]
    fn an_item_larger_than_a_chunk_goes_alone_and_nothing_makes_no_message() {
        let chunks = chunks(vec![image("small", 10), image("big", 5000), image("small2", 10)], 1000);
        let ids: Vec<Vec<&str>> = chunks.iter().map(|c| c.iter().map(|i| i.id.as_str()).collect()).collect();
        assert_eq!(ids, [vec!["small"], vec!["big"], vec!["small2"]]);
        assert!(super::chunks(Vec::<cri::Image>::new(), 1000).is_empty());
    }
}
