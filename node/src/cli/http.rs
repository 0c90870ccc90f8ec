//! The CLI's upload with a progress bar on stderr (when it is a terminal); every other call
//! goes through [`crate::client::Gateway`] directly.

use crate::client::{Answer, ClientError, Gateway};

/// POSTs `body` to `path` of `gateway`, showing the upload's progress.
pub(super) fn post_with_progress(
    gateway: &Gateway,
    path: &str,
    body: Vec<u8>,
) -> Result<Answer, ClientError> {
    use std::io::IsTerminal;
    let bar = if std::io::stderr().is_terminal() {
        indicatif::ProgressBar::new(body.len() as u64)
    } else {
        indicatif::ProgressBar::hidden()
    };
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "{msg} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec}",
        )
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    bar.set_message("uploading");
    let mut reader = bar.wrap_read(std::io::Cursor::new(body));
    let answer = gateway.post_reader(path, &mut reader);
    bar.finish_and_clear();
    answer
}
