"""LLM latency benchmark engine (Python 3.11 standard library only).

Runs on bench hosts as Ansible module_utils and on any machine through
``bin/llm-latency-bench``. Entry points are in ``engine``.
"""
