#!/usr/bin/env bash
# Watch one execution over Server-Sent Events with curl, resuming after any cut.
#
#   PROGRESS_URL=http://127.0.0.1:8000 PROGRESS_TOKEN=<token> examples/sse_watch.sh exec_1a2b3c4d5e6f
#   SSE_LAST_EVENT_ID=3 examples/sse_watch.sh exec_1a2b3c4d5e6f     # start after the event with id 3
#
# For shells, CI jobs and proxies that cannot do WebSockets: GET .../progress/stream is
# text/event-stream (docs/protocol/sse.md). Every event is three lines, "id: <seq>",
# "event: <type>", "data: <the frame's JSON>", then a blank line; ": keep-alive" comments come
# every 15 s. The response ends after the terminal event. If it ends before that (a restart,
# a proxy's timeout), this script reconnects with "Last-Event-ID: <last id>", which the
# server resumes after, so no event is printed twice or lost.
#
# Prints one line per event ("#4 progress 60% step_3"); exits 0 when the run completed,
# 1 failed, 2 cancelled, 3 on a refusal (401, 404, 400) or when the server stays away.
# Needs bash and curl only (the JSON is picked apart with sed, not parsed).
set -uo pipefail

execution_id="${1:?usage: $0 EXECUTION_ID (with PROGRESS_URL and PROGRESS_TOKEN set)}"
url="${PROGRESS_URL:-http://127.0.0.1:8000}"
url="${url%/}/api/v1/executions/${execution_id}/progress/stream"
token="${PROGRESS_TOKEN:?set PROGRESS_TOKEN to your API token}"
last_id="${SSE_LAST_EVENT_ID:-}"
outcome=""
failures=0

field() { # the JSON string or number value of "$1" in the frame "$2" (first match)
  sed -n -E "s/.*\"$1\":\"?([^\",}]*)\"?.*/\1/p" <<<"$2"
}

while [[ -z "$outcome" ]]; do
  id="" event="" data="" got_event=0 curl_status="" refusal=""
  resume=()
  [[ -n "$last_id" ]] && resume=(-H "Last-Event-ID: $last_id")
  # -N: print as it arrives; --fail-with-body: a refusal is an error (its JSON detail is shown).
  while IFS= read -r line; do
    line="${line%$'\r'}"
    case "$line" in
      *"curl-failed: "*) # curl's exit status, after the body of a refusal if there was one
        curl_status="${line##*curl-failed: }"
        refusal="${line%curl-failed: *}"
        ;;
      "id: "*) id="${line#id: }" ;;
      "event: "*) event="${line#event: }" ;;
      "data: "*) data="${line#data: }" ;;
      "") # a blank line ends an event
        if [[ -n "$data" ]]; then
          got_event=1
          [[ -n "$id" ]] && last_id="$id"
          percentage="$(field percentage "$data")"
          step="$(field current_step_name "$data")"
          [[ "$step" == "null" ]] && step=""
          if [[ "$event" == "error" ]]; then
            echo "server: $(field message "$data")" >&2
            outcome="refused"
          else
            printf '#%-4s %-10s %s%s\n' "$id" "$event" "${percentage:+${percentage%.*}% }" "$step"
          fi
          case "$event" in completed | failed | cancelled) outcome="$event" ;; esac
        fi
        id="" event="" data=""
        ;;
    esac
  done < <(curl -sS -N --fail-with-body -H "Authorization: Token $token" -H "Accept: text/event-stream" \
    "${resume[@]}" "$url" || echo "curl-failed: $?")
  [[ -n "$outcome" ]] && break
  if [[ "$curl_status" == "22" ]]; then # an HTTP error: 401, 404, 400 are final
    echo "refused: ${refusal:-HTTP error}" >&2
    outcome="refused"
    break
  elif [[ -n "$curl_status" || $got_event -eq 0 ]]; then
    failures=$((failures + 1))
  else
    failures=0
  fi
  [[ $failures -ge 5 ]] && { echo "the server stayed away; giving up" >&2; outcome="refused"; break; }
  if [[ -n "$curl_status" ]]; then
    echo "(no stream: curl exit $curl_status; retrying)"
  else
    echo "(stream ended before the terminal event; resuming after id ${last_id:-none})"
  fi
  sleep 1
done

case "$outcome" in
  completed) exit 0 ;;
  failed) exit 1 ;;
  cancelled) exit 2 ;;
  *) exit 3 ;;
esac
