"""FlexLLM-style co-serving plans: iteration latency model, hybrid token scheduler, request
traces, and a simulator comparing co-serving with separate clusters and temporal sharing."""
