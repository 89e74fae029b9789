//! MCP over stdio with every line answered. The SDK drops a line it cannot parse without a
//! word, which leaves a client waiting forever on that id; here each line is checked first
//! (the same checks as over HTTP) and a bad one gets its JSON-RPC error, while good ones pass
//! through to the SDK unchanged. Output is written a whole line at a time, so the SDK's
//! replies and these errors never interleave.

use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncWrite, AsyncWriteExt, BufReader, DuplexStream};
use tokio::sync::mpsc;

use super::http::jsonrpc_refusal;

/// Longest message read, in bytes; a longer line is refused (and still answered).
const MAX_LINE_BYTES: usize = 16 << 20;

/// Room in the pipes to and from the SDK.
const PIPE_BYTES: usize = 1 << 20;

/// The transport to hand the SDK: its input is `input` with bad lines answered and removed,
/// its output goes to `output`. The task returned ends once everything the SDK wrote is out.
pub(super) fn checked<R, W>(
    input: R,
    output: W,
) -> ((DuplexStream, DuplexStream), tokio::task::JoinHandle<()>)
where
    R: AsyncRead + Unpin + Send + 'static,
    W: AsyncWrite + Unpin + Send + 'static,
{
    let (sdk_input, mut to_sdk) = tokio::io::duplex(PIPE_BYTES);
    let (sdk_output, from_sdk) = tokio::io::duplex(PIPE_BYTES);
    let (refusals, mut refused) = mpsc::channel::<Vec<u8>>(64);
    tokio::spawn(async move {
        let mut lines = BufReader::new(input).split(b'\n');
        while let Ok(Some(line)) = lines.next_segment().await {
            if line.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            let refusal = if line.len() > MAX_LINE_BYTES {
                Some(serde_json::json!({"jsonrpc": "2.0", "id": null, "error": {
                    "code": -32600,
                    "message": format!("Invalid Request: a message is at most {MAX_LINE_BYTES} bytes"),
                }}))
            } else {
                jsonrpc_refusal(&line)
            };
            match refusal {
                Some(error) => {
                    if refusals.send(error.to_string().into_bytes()).await.is_err() {
                        break;
                    }
                }
                None => {
                    let mut line = line;
                    line.push(b'\n');
                    if to_sdk.write_all(&line).await.is_err() {
                        break;
                    }
                }
            }
        }
        // End of input (or the SDK gone): closing the pipe ends the session.
        let _ = to_sdk.shutdown().await;
    });
    let writer = tokio::spawn(async move {
        let mut output = output;
        let mut replies = BufReader::new(from_sdk).split(b'\n');
        let mut refusals_open = true;
        loop {
            let mut line = tokio::select! {
                reply = replies.next_segment() => match reply {
                    Ok(Some(line)) => line,
                    _ => break,
                },
                refusal = refused.recv(), if refusals_open => match refusal {
                    Some(line) => line,
                    None => {
                        refusals_open = false;
                        continue;
                    }
                },
            };
            line.push(b'\n');
            if output.write_all(&line).await.is_err() || output.flush().await.is_err() {
                return;
            }
        }
        // The SDK is done; refusals of the last lines still get out.
        while let Ok(mut line) = refused.try_recv() {
            line.push(b'\n');
            if output.write_all(&line).await.is_err() {
                return;
            }
        }
        let _ = output.flush().await;
    });
    ((sdk_input, sdk_output), writer)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncReadExt;

    #[tokio::test]
    async fn every_bad_line_is_answered_and_good_ones_pass_through() {
        let input = concat!(
            "garbage\n",
            "{\"jsonrpc\":\"2.0\",\"id\":5,\"method\":\"tools/call\",\"params\":{}}\n",
            "\n",
            "{\"jsonrpc\":\"2.0\",\"id\":6,\"method\":\"ping\"}\n",
        );
        let (output, mut written) = tokio::io::duplex(1 << 16);
        let ((mut sdk_input, mut sdk_output), writer) = checked(input.as_bytes(), output);
        // The SDK sees the good line only, then the end of input.
        let mut seen = String::new();
        sdk_input.read_to_string(&mut seen).await.expect("read");
        assert_eq!(seen, "{\"jsonrpc\":\"2.0\",\"id\":6,\"method\":\"ping\"}\n");
        sdk_output
            .write_all(b"{\"jsonrpc\":\"2.0\",\"id\":6,\"result\":{}}\n")
            .await
            .expect("reply");
        drop(sdk_output);
        writer.await.expect("writer");
        let mut out = String::new();
        written.read_to_string(&mut out).await.expect("output");
        let lines: Vec<serde_json::Value> = out
            .lines()
            .map(|l| serde_json::from_str(l).expect("a JSON line"))
            .collect();
        assert_eq!(lines.len(), 3, "{out}");
        let code_of = |id: serde_json::Value| {
            lines
                .iter()
                .find(|l| l["id"] == id && l.get("error").is_some())
                .map(|l| l["error"]["code"].clone())
        };
        assert_eq!(
            code_of(serde_json::Value::Null),
            Some((-32700).into()),
            "{out}"
        );
        assert_eq!(code_of(5.into()), Some((-32602).into()), "{out}");
        assert!(
            lines
                .iter()
                .any(|l| l["id"] == 6 && l.get("result").is_some()),
            "{out}"
        );
    }
}
