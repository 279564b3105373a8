"""channels/wechat package."""
