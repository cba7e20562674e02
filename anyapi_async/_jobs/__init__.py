"""Resumable JSONL batch jobs: `run_jsonl_job`, and the parts any engine reuses.

Input, one request per line: an OpenAI Batch API request line, or a plain request body
(what ``client.chat.completions.batch()`` takes), with an optional ``custom_id``:

```text
{"custom_id": "q1", "method": "POST", "url": "/v1/chat/completions", "body": {"model": ...}}
{"custom_id": "q2", "model": "gpt-5", "messages": [{"role": "user", "content": "Hi"}]}
{"model": "gpt-5", "messages": [{"role": "user", "content": "Hi"}]}
```

A line without ``custom_id`` gets its line number, ``"line-7"``. Blank lines and a UTF-8
byte-order mark are ignored.

Output, one line per input line, as the OpenAI Batch API writes them, plus the request's
fingerprint:

```text
{"custom_id": "q1", "response": {"status_code": 200, "request_id": "...", "body": {...}},
 "error": null, "request_fingerprint": "9f86d081884c7d65"}
```

``error`` is set exactly when the item failed; ``response`` holds what the server answered,
if it answered. An invalid input line gets an error line naming its line number (type
``invalid_request``).

Identity: ``request_fingerprint`` is a hash of the request as sent (keys sorted, after
``model=``). Before anything is written, a resumed job checks every recorded result
against the input: a result whose custom_id now names a different request, or that no
input line produced, means the file is another job's output, and `JobConflict` is raised.

Resuming: each result is appended as one ``write()`` of one whole line, so a killed run
leaves at most a torn last line. On start the runner cuts a torn tail, reads the results
already written, skips the input lines they answer and runs the rest. With
``retry_failed`` it first rewrites the file without its failed results (a new file renamed
over the old one, so a kill leaves either), and their lines run again.

Stopping early (`Breaker`, shared by every engine): a run of `STOP_AFTER_ENDPOINT_ERRORS`
consecutive connection errors (or 404s before any success: a wrong URL), any 401, 402 or
403, or a 429 ``insufficient_quota`` (out of credit), stops the job with `JobStopped`; so
does a run that ends with only such failures and no success. The requests that met those
errors and the ones not sent yet are not recorded, so running the job again completes them.

The package, by concern: `files` (input lines, fingerprints, the locked output, result
lines), `plan` (what every engine shares: sending one body, `open_job`, the early stop),
`local` (`run_jsonl_job`, the asyncio engine) and `on_ray` (the Ray engine, imported only
by ``anyapi batch --engine ray``).

Memory: results are written as they come and never kept. The one structure that grows with
the job is the table of results already in the output, read on a resume (about 165 bytes
per short id; checking it against the input copies it once, a peak of about 220 bytes per
id, see docs/batch.md); each entry is dropped as its input line is skipped.
"""

from __future__ import annotations

from .._exceptions import JobConflict, JobError, JobStopped
from .._records import JobSummary
from .local import run_jsonl_job
from .plan import DEFAULT_JOB_CONCURRENCY, STOP_AFTER_ENDPOINT_ERRORS

__all__ = [
    "DEFAULT_JOB_CONCURRENCY",
    "STOP_AFTER_ENDPOINT_ERRORS",
    "JobConflict",
    "JobError",
    "JobStopped",
    "JobSummary",
    "run_jsonl_job",
]
