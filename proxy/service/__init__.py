"""The services: pages, project lists, metadata and files, as plain values and typed errors.

Below the HTTP edge (``proxy.server``) and above ``network``, ``cache`` and ``index``; the edge
and the tools call them, and nothing here knows of Starlette.
"""
