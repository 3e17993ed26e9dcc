// Reading a QR code with the camera: getUserMedia frames drawn to a canvas and decoded
// by jsQR. The camera is opened only when the person presses Scan, and closed when a
// code is read or they press Stop.
import jsQR from "jsqr";

/** Whether the browser has a camera at all (labels are not needed to know). */
export async function hasCamera() {
  try {
    const devices = (await navigator.mediaDevices?.enumerateDevices?.()) ?? [];
    return devices.some((d) => d.kind === "videoinput");
  } catch {
    return false;
  }
}

/**
 * Shows the camera in `video` and resolves with the first QR code's text; `stop()`
 * ends the scan (resolving with null).
 */
export function scanQr(video) {
  let stopped = false;
  let stream = null;
  let finish;
  const done = new Promise((resolve) => (finish = resolve));
  const canvas = document.createElement("canvas");
  const context = canvas.getContext("2d", { willReadFrequently: true });

  const close = (value) => {
    if (stopped) return;
    stopped = true;
    stream?.getTracks().forEach((track) => track.stop());
    video.srcObject = null;
    finish(value);
  };

  (async () => {
    try {
      stream = await navigator.mediaDevices.getUserMedia({ video: { facingMode: "environment" }, audio: false });
    } catch (error) {
      finish(Promise.reject(error));
      stopped = true;
      return;
    }
    if (stopped) return close(null);
    video.srcObject = stream;
    await video.play().catch(() => {});
    const frame = () => {
      if (stopped) return;
      if (video.readyState >= video.HAVE_CURRENT_DATA && video.videoWidth) {
        canvas.width = video.videoWidth;
        canvas.height = video.videoHeight;
        context.drawImage(video, 0, 0);
        const image = context.getImageData(0, 0, canvas.width, canvas.height);
        const code = jsQR(image.data, image.width, image.height, { inversionAttempts: "dontInvert" });
        if (code?.data) return close(code.data);
      }
      requestAnimationFrame(frame);
    };
    frame();
  })();

  return { result: done, stop: () => close(null) };
}
