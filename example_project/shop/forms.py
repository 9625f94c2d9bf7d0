from __future__ import annotations

from django import forms

from shop.models import Customer


class SignupForm(forms.ModelForm):  # type: ignore[type-arg]  # not generic at run time
    class Meta:
        model = Customer
        fields = ("name", "email")
