"""The dashboard: server-rendered pages for people, beside the JSON API on the same port.

``pages`` holds the routes, ``views`` what each page shows, ``sessions`` the signed login
cookie and the CSRF token every form carries; ``templates/`` and ``static/`` ship with the
package (htmx vendored, nothing loaded from the internet).
"""
