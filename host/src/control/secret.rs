//! The control secret that derives schema-role passwords and ledger MACs.

use tokio_postgres::GenericClient;

use super::{ControlError, pg};

/// The secret, read on the operator's connection or inside one of its transactions. A secret
/// that is not 32 bytes is an error: deriving passwords and MACs from a stand-in key would
/// lock every tenant out and make every ledger row look forged.
pub async fn read_secret(client: &impl GenericClient) -> Result<[u8; 32], ControlError> {
    let row = client
        .query_one("SELECT key FROM wasmig.secret WHERE id = 1", &[])
        .await
        .map_err(pg(
            "reading the control secret (the operator role needs access to `wasmig.secret`)",
        ))?;
    let key: Vec<u8> = row.get(0);
    let len = key.len();
    key.try_into()
        .map_err(|_| ControlError::MalformedSecret { len })
}
