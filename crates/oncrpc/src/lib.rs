//! XDR (RFC 4506) and ONC RPC v2 (RFC 5531) as ganesha-ctdb needs them: the NFSv4 test
//! and NLM test clients over TCP and the NSM sender over UDP. Every length read
//! from the network is checked against a caller-supplied bound before anything is allocated.

pub mod pmap;
pub mod rpc;
pub mod xdr;

pub use rpc::{Auth, CallHeader, RpcError, TcpTransport};
pub use xdr::{XdrError, XdrReader, XdrWriter};
