// Stand-in for ComfyUI's scripts/api.js shim: an EventTarget whose custom
// events carry the websocket message data in `detail`, as ComfyApi does.
class FakeApi extends EventTarget {
  dispatchMessage(type, data) {
    this.dispatchEvent(new CustomEvent(type, { detail: data }));
  }
}
export const api = new FakeApi();
window.__fakeApi = api;
