#!/usr/bin/env python3
"""S3 helpers for the integration tests (Python 3; stdlib, pyarrow and boto3 only).

Usage:
  s3_tools.py drop-conditional [-v] LISTEN_PORT UPSTREAM_URL
      A threaded HTTP/1.1 reverse proxy on 127.0.0.1:LISTEN_PORT (0: any free port) that
      forwards every request to UPSTREAM_URL (e.g. http://127.0.0.1:9002) unchanged (method,
      path and query as sent, Host included, every header but the hop-by-hop ones, the body as
      sent: Content-Length, or Transfer-Encoding: chunked relayed chunk by chunk; an aws-chunked
      body is just bytes to it) and relays the response, but REMOVES the If-None-Match and
      If-Match request headers: an S3-compatible store that ignores conditional writes and
      silently overwrites. That breaks the SigV4 signature of a request that carried them, so
      the upstream must check none (`S3_AUTH=none scripts/s3 start`). Prints exactly one line,
      "listening on http://127.0.0.1:PORT", once it accepts connections; serves until killed.
      Client connections are kept alive; each request gets its own upstream connection.
      Expect: 100-continue is answered by the proxy itself and not forwarded. -v logs every
      request to stderr.
  s3_tools.py read URL_OR_DIR
      Every finalized Parquet file under a local directory or s3://bucket/prefix, as one JSON
      object {relative_path: [row, ...]} on stdout (see read_report for the value forms).
  s3_tools.py digest URL_OR_DIR
      The SHA-256 of every finalized Parquet file under a local directory or s3://bucket/prefix
      (boto3 for S3), as one JSON object {relative_path: hex digest} on stdout: byte-for-byte
      comparisons of two landings.
  s3_tools.py keys S3_URL
      Every object key under the prefix (all of them, "_" and "." names included), relative to
      the prefix, sorted, one per line.
  s3_tools.py put S3_URL KEY TEXT
      An unconditional PutObject of TEXT (UTF-8) at prefix/KEY.
  s3_tools.py rm S3_URL KEY
      Deletes the object at prefix/KEY (as a user moving a foreign file out of the way would).
  s3_tools.py get S3_URL KEY
      The object's bytes on stdout, unchanged. Exit status 1 (with a message) if it is missing.

S3 access is configured from the environment, as `eval "$(scripts/s3 env)"` sets it:
AWS_ENDPOINT_URL (or AWS_ENDPOINT; http:// or https://; unset: AWS itself), AWS_ACCESS_KEY_ID,
AWS_SECRET_ACCESS_KEY, AWS_REGION (or AWS_DEFAULT_REGION; default us-east-1). Path-style
addressing. Errors go to stderr with exit status 1; usage errors exit 2.
"""
import argparse
import base64
import datetime
import decimal
import http.client
import http.server
import json
import math
import os
import socketserver
import sys
import urllib.parse

# ----------------------------------------------------------------------------------------------
# drop-conditional: the reverse proxy

# RFC 9110 7.6.1 connection-specific fields, plus the old Proxy-Connection. Transfer-Encoding
# is handled separately (a chunked request body is relayed with its framing).
HOP_BY_HOP = {
    "connection",
    "keep-alive",
    "proxy-connection",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "upgrade",
    "transfer-encoding",
}
# Dropped on the way to the upstream: the conditional-write headers this proxy exists to
# remove, and Expect (BaseHTTPRequestHandler already answered 100 Continue to the client).
DROPPED = {"if-none-match", "if-match", "expect"}
COPY_SIZE = 64 * 1024


def connection_tokens(headers):
    """Header names listed in Connection (also hop-by-hop, RFC 9110 7.6.1)."""
    tokens = set()
    for value in headers.get_all("Connection") or []:
        tokens.update(t.strip().lower() for t in value.split(",") if t.strip())
    return tokens


class ProxyHandler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    upstream = None  # urllib.parse.SplitResult, set by cmd_drop_conditional
    verbose = False

    def handle_one_request(self):
        # BaseHTTPRequestHandler's own, dispatching every method to proxy().
        try:
            self.raw_requestline = self.rfile.readline(65537)
            if len(self.raw_requestline) > 65536:
                self.requestline = ""
                self.request_version = ""
                self.command = ""
                self.send_error(414)
                return
            if not self.raw_requestline:
                self.close_connection = True
                return
            if not self.parse_request():
                return
            self.proxy()
            self.wfile.flush()
        except (TimeoutError, ConnectionError) as e:
            self.log_error("connection to the client lost: %r", e)
            self.close_connection = True

    def log_message(self, format, *args):
        if self.verbose:
            sys.stderr.write("drop-conditional: [:%d] %s\n" % (self.client_address[1], format % args))

    def log_error(self, format, *args):
        sys.stderr.write("drop-conditional: %s\n" % (format % args))

    def upstream_connection(self):
        u = self.upstream
        cls = http.client.HTTPSConnection if u.scheme == "https" else http.client.HTTPConnection
        return cls(u.hostname, u.port, timeout=300)

    def proxy(self):
        hop = HOP_BY_HOP | connection_tokens(self.headers)
        transfer_encoding = self.headers.get("Transfer-Encoding")
        chunked = transfer_encoding is not None and "chunked" in transfer_encoding.lower()
        length = self.headers.get("Content-Length")
        if not chunked and length is not None:
            try:
                length = int(length)
                if length < 0:
                    raise ValueError(length)
            except ValueError:
                self.send_error(400, "bad Content-Length")
                self.close_connection = True
                return
        dropped = []
        forward = []
        for name, value in self.headers.items():
            lname = name.lower()
            if lname in DROPPED:
                if lname != "expect":
                    dropped.append(name)
                continue
            if lname in hop or (chunked and lname == "content-length"):
                continue
            forward.append((name, value))
        if chunked:
            forward.append(("Transfer-Encoding", transfer_encoding))

        base = (self.upstream.path or "").rstrip("/")
        conn = self.upstream_connection()
        sent = True
        try:
            conn.putrequest(self.command, base + self.path, skip_host=True, skip_accept_encoding=True)
            for name, value in forward:
                conn.putheader(name, value)
            conn.endheaders()
        except OSError as e:
            # Nothing reached the upstream; still read the body so the client connection stays
            # in step.
            self.log_error("upstream %s: %r", self.upstream.geturl(), e)
            sent = False
        upstream_error = None
        sink = conn.send if sent else None

        def write(data):
            nonlocal sink, upstream_error
            if sink is None:
                return
            try:
                sink(data)
            except OSError as e:
                # The upstream answered early (or went away); its answer, if any, is read below.
                upstream_error = e
                sink = None

        if chunked:
            self.relay_chunked(write)
        elif length:
            remaining = length
            while remaining:
                data = self.rfile.read(min(COPY_SIZE, remaining))
                if not data:
                    self.close_connection = True
                    conn.close()
                    return
                remaining -= len(data)
                write(data)
        if not sent:
            conn.close()
            self.send_plain(502, "upstream %s unreachable" % self.upstream.geturl())
            return
        try:
            response = conn.getresponse()
        except (OSError, http.client.HTTPException) as e:
            conn.close()
            self.log_error("upstream %s: %r (while sending: %r)", self.upstream.geturl(), e, upstream_error)
            self.send_plain(502, "upstream %s failed: %r" % (self.upstream.geturl(), e))
            return
        try:
            self.relay_response(response)
        finally:
            conn.close()
        if self.verbose:
            self.log_message(
                '"%s" %s%s',
                self.requestline,
                response.status,
                " (dropped %s)" % ", ".join(dropped) if dropped else "",
            )

    def relay_chunked(self, write):
        """Copy a chunked body with its framing (extensions and trailers included)."""
        while True:
            line = self.rfile.readline(65537)
            if not line.endswith(b"\n"):
                raise ConnectionError("truncated chunked request body")
            write(line)
            try:
                size = int(line.split(b";", 1)[0].strip(), 16)
            except ValueError:
                raise ConnectionError("bad chunk size line %r" % line[:40]) from None
            if size == 0:
                break
            remaining = size + 2  # the data and its CRLF
            while remaining:
                data = self.rfile.read(min(COPY_SIZE, remaining))
                if not data:
                    raise ConnectionError("truncated chunked request body")
                remaining -= len(data)
                write(data)
        while True:  # trailer fields, up to the empty line
            line = self.rfile.readline(65537)
            if not line.endswith(b"\n"):
                raise ConnectionError("truncated chunked request trailers")
            write(line)
            if line in (b"\r\n", b"\n"):
                break

    def relay_response(self, response):
        hop = HOP_BY_HOP | connection_tokens(response.msg)
        self.send_response_only(response.status, response.reason)
        length = response.getheader("Content-Length")
        no_body = (
            self.command == "HEAD" or response.status in (204, 304) or 100 <= response.status < 200
        )
        for name, value in response.msg.items():
            if name.lower() not in hop:
                self.send_header(name, value)
        if no_body:
            self.end_headers()
            return
        if length is not None:
            self.end_headers()
            while True:
                data = response.read(COPY_SIZE)
                if not data:
                    break
                self.wfile.write(data)
            return
        # Chunked or delimited by the upstream closing: send it chunked (HTTP/1.1) or close.
        if self.request_version == "HTTP/1.1":
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            while True:
                data = response.read1(COPY_SIZE)
                if not data:
                    break
                self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
            self.wfile.write(b"0\r\n\r\n")
        else:
            self.send_header("Connection", "close")
            self.end_headers()
            self.wfile.write(response.read())
            self.close_connection = True

    def send_plain(self, status, text):
        body = (text + "\n").encode()
        self.send_response(status)
        self.send_header("Content-Type", "text/plain; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)


class ProxyServer(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128


def cmd_drop_conditional(args):
    upstream = urllib.parse.urlsplit(args.upstream_url)
    if upstream.scheme not in ("http", "https") or not upstream.hostname:
        die("UPSTREAM_URL must be http://host:port or https://host:port, not %r" % args.upstream_url, 2)
    handler = type("Handler", (ProxyHandler,), {"upstream": upstream, "verbose": args.verbose})
    try:
        server = ProxyServer(("127.0.0.1", args.listen_port), handler)  # bound and listening
    except OSError as e:
        die("cannot listen on 127.0.0.1:%d: %s" % (args.listen_port, e))
    print("listening on http://127.0.0.1:%d" % server.server_address[1], flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass


# ----------------------------------------------------------------------------------------------
# S3 access


def die(message, status=1):
    sys.stderr.write("s3_tools: %s\n" % message)
    sys.exit(status)


def env_endpoint():
    return os.environ.get("AWS_ENDPOINT_URL") or os.environ.get("AWS_ENDPOINT") or None


def env_region():
    return os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or "us-east-1"


def split_s3_url(url):
    """s3://bucket/prefix -> (bucket, prefix without slashes at either end)."""
    u = urllib.parse.urlsplit(url)
    if u.scheme != "s3" or not u.netloc:
        die("expected s3://bucket[/prefix], not %r" % url, 2)
    return u.netloc, u.path.strip("/")


def join_key(prefix, key):
    return "%s/%s" % (prefix, key) if prefix else key


def boto3_client():
    import boto3
    from botocore.config import Config

    return boto3.client(
        "s3",
        endpoint_url=env_endpoint(),
        aws_access_key_id=os.environ.get("AWS_ACCESS_KEY_ID"),
        aws_secret_access_key=os.environ.get("AWS_SECRET_ACCESS_KEY"),
        region_name=env_region(),
        config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 3, "mode": "standard"}),
    )


def client_error(e):
    import botocore.exceptions

    if isinstance(e, botocore.exceptions.ClientError):
        err = e.response.get("Error", {})
        status = e.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        return "%s %s: %s" % (status, err.get("Code"), err.get("Message"))
    return repr(e)


def cmd_keys(args):
    import botocore.exceptions

    bucket, prefix = split_s3_url(args.s3_url)
    start = prefix + "/" if prefix else ""
    keys = []
    try:
        for page in boto3_client().get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=start):
            keys.extend(o["Key"][len(start):] for o in page.get("Contents", []))
    except (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError) as e:
        die("listing %s: %s" % (args.s3_url, client_error(e)))
    out = sys.stdout
    for key in sorted(keys):
        out.write(key + "\n")
    out.flush()


def cmd_put(args):
    import botocore.exceptions

    bucket, prefix = split_s3_url(args.s3_url)
    key = join_key(prefix, args.key)
    try:
        boto3_client().put_object(Bucket=bucket, Key=key, Body=args.text.encode("utf-8"))
    except (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError) as e:
        die("put s3://%s/%s: %s" % (bucket, key, client_error(e)))


def cmd_rm(args):
    import botocore.exceptions

    bucket, prefix = split_s3_url(args.s3_url)
    key = join_key(prefix, args.key)
    try:
        boto3_client().delete_object(Bucket=bucket, Key=key)
    except (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError) as e:
        die("rm s3://%s/%s: %s" % (bucket, key, client_error(e)))


def cmd_get(args):
    import botocore.exceptions

    bucket, prefix = split_s3_url(args.s3_url)
    key = join_key(prefix, args.key)
    try:
        body = boto3_client().get_object(Bucket=bucket, Key=key)["Body"].read()
    except (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError) as e:
        die("get s3://%s/%s: %s" % (bucket, key, client_error(e)))
    sys.stdout.buffer.write(body)
    sys.stdout.buffer.flush()


# ----------------------------------------------------------------------------------------------
# read: Parquet files as JSON


def pyarrow_s3():
    from pyarrow import fs

    options = {
        "access_key": os.environ.get("AWS_ACCESS_KEY_ID"),
        "secret_key": os.environ.get("AWS_SECRET_ACCESS_KEY"),
        "region": env_region(),
    }
    endpoint = env_endpoint()
    if endpoint:
        u = urllib.parse.urlsplit(endpoint)
        if u.scheme not in ("http", "https") or not u.netloc:
            die("AWS_ENDPOINT_URL must be http://host[:port] or https://host[:port], not %r" % endpoint, 2)
        options["scheme"] = u.scheme
        options["endpoint_override"] = u.netloc
    return fs.S3FileSystem(**{k: v for k, v in options.items() if v is not None})


def finalized(relative):
    """A *.parquet file no part of whose relative path starts with "." or "_" (the names that
    pyarrow, DuckDB and Spark skip as hidden or temporary)."""
    parts = relative.split("/")
    return parts[-1].endswith(".parquet") and not any(p.startswith((".", "_")) for p in parts)


EPOCH = datetime.datetime(1970, 1, 1)
DIGITS = {"s": 0, "ms": 3, "us": 6, "ns": 9}


def split_unit(value, unit):
    """(whole seconds, fraction digits or "") of an integer count of `unit`."""
    d = DIGITS[unit]
    seconds, fraction = divmod(value, 10**d) if d else (value, 0)
    return seconds, (".%0*d" % (d, fraction) if fraction else "")


def format_timestamp(value, unit, tz):
    seconds, fraction = split_unit(value, unit)
    try:
        text = (EPOCH + datetime.timedelta(seconds=seconds)).isoformat()
    except OverflowError:
        return "%d%s" % (value, unit)
    return text + fraction + ("Z" if tz else "")


def format_time(value, unit):
    seconds, fraction = split_unit(value, unit)
    return "%02d:%02d:%02d%s" % (seconds // 3600, seconds // 60 % 60, seconds % 60, fraction)


def format_duration(value, unit):
    sign = "-" if value < 0 else ""
    seconds, fraction = split_unit(abs(value), unit)
    return "%sPT%d%sS" % (sign, seconds, fraction)


def plain(value):
    """A Python value from pyarrow's to_pylist in a JSON-safe form."""
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        if math.isfinite(value):
            return value
        return "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")
    if isinstance(value, decimal.Decimal):
        return str(value)
    if isinstance(value, (bytes, bytearray, memoryview)):
        return base64.b64encode(bytes(value)).decode("ascii")
    if isinstance(value, (datetime.datetime, datetime.date, datetime.time)):
        return value.isoformat()
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    if hasattr(value, "item"):  # a NumPy scalar (half floats)
        return plain(value.item())
    return str(value)


def values(array):
    """A list of JSON-safe values of an Arrow array (chunked or not), nested types included.
    Temporal types are formatted from their integers, so nanoseconds need no pandas."""
    import pyarrow as pa
    import pyarrow.compute as pc

    if isinstance(array, pa.ChunkedArray):
        out = []
        for chunk in array.chunks:
            out.extend(values(chunk))
        return out
    t = array.type
    if isinstance(t, pa.ExtensionType):
        return values(array.storage)
    if pa.types.is_dictionary(t):
        return values(array.dictionary_decode())
    valid = array.is_valid().to_pylist()
    if pa.types.is_timestamp(t) or pa.types.is_time(t) or pa.types.is_duration(t):
        ints = array.cast(pa.int64()).to_pylist()
        if pa.types.is_timestamp(t):
            fmt = lambda v: format_timestamp(v, t.unit, t.tz)  # noqa: E731
        elif pa.types.is_time(t):
            fmt = lambda v: format_time(v, t.unit)  # noqa: E731
        else:
            fmt = lambda v: format_duration(v, t.unit)  # noqa: E731
        return [None if v is None else fmt(v) for v in ints]
    if pa.types.is_struct(t):
        fields = [values(f) for f in array.flatten()]
        names = [t.field(i).name for i in range(t.num_fields)]
        return [
            dict(zip(names, (f[i] for f in fields))) if ok else None for i, ok in enumerate(valid)
        ]
    if pa.types.is_map(t):
        # list_flatten has no map kernel: the offsets (of this slice) index the whole children.
        offsets = array.offsets.to_pylist()
        pairs = [[k, v] for k, v in zip(values(array.keys), values(array.items))]
        return [
            pairs[offsets[i] : offsets[i + 1]] if ok else None for i, ok in enumerate(valid)
        ]
    if pa.types.is_list(t) or pa.types.is_large_list(t) or pa.types.is_fixed_size_list(t) or (
        hasattr(pa.types, "is_list_view") and (pa.types.is_list_view(t) or pa.types.is_large_list_view(t))
    ):
        return split_by_lengths(values(array.flatten()), pc.list_value_length(array).to_pylist())
    return [plain(v) for v in array.to_pylist()]


def split_by_lengths(flat, lengths):
    out, at = [], 0
    for n in lengths:
        if n is None:
            out.append(None)
        else:
            out.append(flat[at : at + n])
            at += n
    return out


def table_rows(table):
    columns = [values(table.column(i)) for i in range(table.num_columns)]
    names = table.column_names
    rows = [dict(zip(names, row)) for row in zip(*columns)] if columns else [{}] * table.num_rows
    # Deterministic: by the canonical JSON text of each row.
    return sorted(rows, key=lambda r: json.dumps(r, sort_keys=True, ensure_ascii=False))


def read_report(location):
    """{relative_path: rows} of every finalized Parquet file under a local directory or
    s3://bucket/prefix. relative_path: "/"-separated, relative to the root. rows: every row of
    the file as {column: value}, sorted by their canonical JSON. Values: null, booleans,
    integers, strings and finite floats as themselves; NaN and infinities as "NaN",
    "Infinity", "-Infinity"; decimals as str(Decimal) (scale kept: "1.50"); timestamps as
    ISO-8601 "YYYY-MM-DDTHH:MM:SS[.fraction]", the fraction with the unit's digits (3, 6 or 9)
    and only if not zero, suffixed "Z" (the UTC instant) when the type has a time zone; dates
    "YYYY-MM-DD"; times "HH:MM:SS[.fraction]"; durations "PT<seconds>[.fraction]S"; binary as
    base64; structs as objects; lists as arrays; maps as arrays of [key, value]. A missing
    s3:// prefix reads as {}; a missing local directory is an error."""
    import pyarrow as pa
    import pyarrow.parquet as pq
    from pyarrow import fs

    if location.startswith("s3://"):
        bucket, prefix = split_s3_url(location)
        filesystem = pyarrow_s3()
        root = "%s/%s/" % (bucket, prefix) if prefix else bucket + "/"
        selector = fs.FileSelector(root.rstrip("/"), recursive=True, allow_not_found=True)
    else:
        if not os.path.isdir(location):
            die("%s is not a directory" % location)
        filesystem = fs.LocalFileSystem()
        root = os.path.abspath(location).replace(os.sep, "/").rstrip("/") + "/"
        selector = fs.FileSelector(root.rstrip("/") or "/", recursive=True)
    report = {}
    for info in filesystem.get_file_info(selector):
        if info.type != fs.FileType.File or not info.path.startswith(root):
            continue
        relative = info.path[len(root):]
        if not finalized(relative):
            continue
        try:
            with filesystem.open_input_file(info.path) as f:
                table = pq.ParquetFile(f).read()
        except (OSError, pa.ArrowException) as e:
            die("reading %s: %s" % (info.path, e))
        report[relative] = table_rows(table)
    return report


def cmd_read(args):
    import pyarrow as pa

    try:
        report = read_report(args.location)
    except (OSError, pa.ArrowException) as e:
        die("reading %s: %s" % (args.location, e))
    sys.stdout.write(json.dumps(report, sort_keys=True, ensure_ascii=False, allow_nan=False) + "\n")
    sys.stdout.flush()


def cmd_digest(args):
    import hashlib

    import botocore.exceptions

    digests = {}
    location = args.location
    if location.startswith("s3://"):
        bucket, prefix = split_s3_url(location)
        start = prefix + "/" if prefix else ""
        client = boto3_client()
        try:
            for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=start):
                for o in page.get("Contents", []):
                    relative = o["Key"][len(start):]
                    if finalized(relative):
                        body = client.get_object(Bucket=bucket, Key=o["Key"])["Body"].read()
                        digests[relative] = hashlib.sha256(body).hexdigest()
        except (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError) as e:
            die("digest %s: %s" % (location, client_error(e)))
    else:
        if not os.path.isdir(location):
            die("%s is not a directory" % location)
        for dirpath, _, names in os.walk(location):
            for name in names:
                path = os.path.join(dirpath, name)
                relative = os.path.relpath(path, location).replace(os.sep, "/")
                if finalized(relative):
                    with open(path, "rb") as f:
                        digests[relative] = hashlib.sha256(f.read()).hexdigest()
    sys.stdout.write(json.dumps(digests, sort_keys=True) + "\n")
    sys.stdout.flush()


# ----------------------------------------------------------------------------------------------


def main(argv=None):
    parser = argparse.ArgumentParser(
        prog="s3_tools.py",
        description="S3 helpers for the integration tests.",
        epilog="See the module docstring for details.",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("drop-conditional", help="proxy that removes If-None-Match and If-Match")
    p.add_argument("-v", "--verbose", action="store_true", help="log every request to stderr")
    p.add_argument("listen_port", type=int, metavar="LISTEN_PORT")
    p.add_argument("upstream_url", metavar="UPSTREAM_URL")
    p.set_defaults(func=cmd_drop_conditional)
    p = sub.add_parser("read", help="finalized Parquet files as one JSON object")
    p.add_argument("location", metavar="URL_OR_DIR")
    p.set_defaults(func=cmd_read)
    p = sub.add_parser("digest", help="SHA-256 of every finalized Parquet file, as JSON")
    p.add_argument("location", metavar="URL_OR_DIR")
    p.set_defaults(func=cmd_digest)
    p = sub.add_parser("keys", help="every key under an s3:// prefix")
    p.add_argument("s3_url", metavar="S3_URL")
    p.set_defaults(func=cmd_keys)
    p = sub.add_parser("put", help="unconditional put of a text object")
    p.add_argument("s3_url", metavar="S3_URL")
    p.add_argument("key", metavar="KEY")
    p.add_argument("text", metavar="TEXT")
    p.set_defaults(func=cmd_put)
    p = sub.add_parser("rm", help="delete one object")
    p.add_argument("s3_url", metavar="S3_URL")
    p.add_argument("key", metavar="KEY")
    p.set_defaults(func=cmd_rm)
    p = sub.add_parser("get", help="an object's bytes on stdout")
    p.add_argument("s3_url", metavar="S3_URL")
    p.add_argument("key", metavar="KEY")
    p.set_defaults(func=cmd_get)
    args = parser.parse_args(argv)
    args.func(args)


if __name__ == "__main__":
    main()
