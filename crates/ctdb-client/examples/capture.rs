//! Prints ctdbd's replies to the controls this crate decodes, as hex lines
//! `<name> <hex>`, for tests/captured/: `capture <ctdbd.socket> [db name]`. Run against a
//! real daemon (e.g. a node of crates/testbed's `up` example); the unit tests decode them.

use ctdb_client::proto::Opcode;
use ctdb_client::Connection;
use std::time::Duration;

fn main() {
    let mut args = std::env::args().skip(1);
    let Some(socket) = args.next() else {
        eprintln!("usage: capture <ctdbd.socket> [persistent db name]");
        std::process::exit(2);
    };
    let db = args.next().unwrap_or_else(|| "ganesha_grace.tdb".into());
    let t = Duration::from_secs(10);
    let hex = |b: &[u8]| b.iter().map(|x| format!("{x:02x}")).collect::<String>();
    let run = || -> Result<(), ctdb_client::ConnError> {
        let mut c = Connection::connect(std::path::Path::new(&socket), t)?;
        println!("get_pnn {}", hex(c.last_reply()));
        c.node_map(t)?;
        println!("get_nodemap {}", hex(c.last_reply()));
        c.public_ips(t)?;
        println!("get_public_ips {}", hex(c.last_reply()));
        let id = c.attach_persistent(&db, t)?;
        println!("db_attach_persistent {}", hex(c.last_reply()));
        c.db_map(c.pnn(), t)?;
        println!("get_dbmap {}", hex(c.last_reply()));
        c.db_path(id, t)?;
        println!("getdbpath {}", hex(c.last_reply()));
        let r = c.control(c.pnn(), Opcode::GetDbMap, 0, &[1, 2, 3], t)?;
        println!(
            "get_dbmap_bad_request {} (status {})",
            hex(c.last_reply()),
            r.status
        );
        Ok(())
    };
    if let Err(e) = run() {
        eprintln!("capture: {e}");
        std::process::exit(1);
    }
}
