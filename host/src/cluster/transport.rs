//! Running a program on a node, dispatched to the local machine or to an
//! SSH connection. (File operations go through [`super::files`].)

use super::{ExecOutput, ExecRequest, NodeError, Transport};

impl Transport {
    pub async fn exec(&self, req: &ExecRequest) -> Result<ExecOutput, NodeError> {
        match self {
            Transport::Local(l) => l.exec(req).await,
            Transport::Ssh(s) => s.exec(req).await,
        }
    }
}
