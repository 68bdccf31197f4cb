"""Numbers from records: the summary, the impact of sharing, the server-side attribution from /metrics, timelines, which runs are compared."""
