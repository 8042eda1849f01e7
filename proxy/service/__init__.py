"""The services: pages and their views, project lists, metadata and files: plain values, typed errors.

Below the HTTP edge (``proxy.server``) and above ``network``, ``cache`` and ``index``; the edge
and the tools call them, and nothing here knows of Starlette.
"""
