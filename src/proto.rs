//! Code generated from `proto/customers/v1` and the descriptor set for reflection.

#![allow(clippy::all, missing_docs)]

/// `customers.v1` messages, clients and servers.
pub mod customers {
    pub mod v1 {
        tonic::include_proto!("customers.v1");
    }
}

pub use customers::v1;

/// Encoded `FileDescriptorSet` of every proto in `proto/`, for server reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/customers_descriptor.bin"));
