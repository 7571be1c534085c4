from __future__ import annotations

from zyra.env import env_bool, env_list

SESSION_COOKIE_HTTPONLY = True
CSRF_COOKIE_HTTPONLY = False
X_FRAME_OPTIONS = "DENY"
SECURE_CONTENT_TYPE_NOSNIFF = True
SESSION_COOKIE_SECURE = env_bool("ZYRA_SECURE_COOKIES", False)
CSRF_COOKIE_SECURE = SESSION_COOKIE_SECURE
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS", [])

# Hosts/addresses exempt from the private-address (SSRF) guard.
ZYRA_HTTP_ALLOWLIST = env_list("ZYRA_HTTP_ALLOWLIST", [])
