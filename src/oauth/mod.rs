//! The OAuth protocol layer: message types and HTTP calls, with no proxy policy. Both the
//! resource-server side ([`crate::inbound`]) and, later, the client side build on it;
//! neither depends on the other.

pub mod challenge;
pub mod http;
pub mod introspection;
pub mod metadata;
pub mod pkce;
pub mod registration;
pub mod token;
