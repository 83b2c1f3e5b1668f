//! A TCP relay between an instance and Redis that the test can cut: every
//! connection through it is dropped at once and new ones are refused, as
//! when the instance's machine goes away (no clean leave, no renewal).

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;

pub(crate) struct Cut {
    port: u16,
    cut: watch::Sender<bool>,
    task: JoinHandle<()>,
}

impl Cut {
    /// Relays 127.0.0.1:{a free port} to 127.0.0.1:`target`.
    pub(crate) async fn start(target: u16) -> Cut {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let (cut, mut on_cut) = watch::channel(false);
        let relays = on_cut.clone();
        let task = tokio::spawn(async move {
            loop {
                let (mut inbound, _) = tokio::select! {
                    accepted = listener.accept() => match accepted {
                        Ok(accepted) => accepted,
                        Err(_) => continue,
                    },
                    _ = on_cut.wait_for(|cut| *cut) => return,
                };
                let mut on_cut = relays.clone();
                tokio::spawn(async move {
                    let Ok(mut outbound) = TcpStream::connect(("127.0.0.1", target)).await else {
                        return;
                    };
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound) => {}
                        _ = on_cut.wait_for(|cut| *cut) => {}
                    }
                });
            }
        });
        Cut { port, cut, task }
    }

    /// The URL for the instance behind the relay.
    pub(crate) fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Drops every relayed connection and closes the listener.
    pub(crate) async fn cut(self) {
        self.cut.send_replace(true);
        let _ = self.task.await;
    }
}
