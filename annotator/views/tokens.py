"""The user's personal API tokens: list, create (the key is shown once), revoke."""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_http_methods, require_POST

from annotator.api.forms import ApiTokenCreateForm
from annotator.api.selectors import api_tokens_list
from annotator.api.services import ApiTokenError, api_token_create, api_token_revoke
from annotator.views._common import request_user


@never_cache
@login_required
@require_http_methods(["GET", "POST"])
def api_tokens(request: HttpRequest) -> HttpResponse:
    """GET lists the tokens; POST creates one and shows its key on this response only.

    The key is rendered, not redirected with a message: messages live in the session, and the
    key must not be stored anywhere.
    """
    user = request_user(request)
    new_key = ""
    status = 200
    if request.method == "POST":
        form = ApiTokenCreateForm(request.POST)
        if form.is_valid():
            try:
                _, new_key = api_token_create(user=user, name=form.cleaned_data["name"])
            except ApiTokenError as exc:
                form.add_error("name", str(exc))
                status = 400
            else:
                form = ApiTokenCreateForm()
        else:
            status = 400
    else:
        form = ApiTokenCreateForm()
    context = {"tokens": api_tokens_list(user=user), "form": form, "new_key": new_key}
    return render(request, "annotator/tokens.html", context, status=status)


@login_required
@require_POST
def api_token_revoke_view(request: HttpRequest, token_id: int) -> HttpResponse:
    try:
        token = api_token_revoke(user=request_user(request), token_id=token_id)
    except ApiTokenError as exc:
        messages.error(request, f"Token not revoked: {exc}")
    else:
        messages.success(request, f"Token “{token.name}” revoked; its key no longer works.")
    return redirect("api_tokens")
