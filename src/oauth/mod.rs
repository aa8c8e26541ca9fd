//! The OAuth protocol layer: message types and HTTP calls, with no proxy policy. Both the
//! resource-server side ([`crate::inbound`]) and, later, the client side build on it;
//! neither depends on the other.

pub(crate) mod assertion;
pub(crate) mod authorize;
pub(crate) mod challenge;
pub(crate) mod device;
pub(crate) mod dpop;
pub(crate) mod exchange;
pub(crate) mod http;
pub(crate) mod id_jag;
pub(crate) mod introspection;
pub(crate) mod metadata;
pub(crate) mod pkce;
pub(crate) mod registration;
pub(crate) mod token;
